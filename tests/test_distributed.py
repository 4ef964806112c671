"""Scale out: 2-process CPU training with torchrun/DDP (gloo)."""
import json
import os
import subprocess
import sys

import pytest

from deeprecipe.api import train
from deeprecipe.cli import _argv_without_devices


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    return env


def test_devices_flag_is_removed_for_the_workers():
    assert _argv_without_devices(["train", "--devices", "2", "--epochs", "1"]) == ["train", "--epochs", "1"]
    assert _argv_without_devices(["train", "--devices=4", "--out", "x"]) == ["train", "--out", "x"]


def test_two_process_gloo_training_matches_single_process(tmp_path, mnist_small_npz):
    sets = ["--set", "model.name=lenet5", "--set", "train.batch_size=16", "--set", "train.threads=1",
            "--set", "data.augment=[]"]
    out = tmp_path / "ddp"
    proc = subprocess.run([sys.executable, "-m", "deeprecipe", "train", "--devices", "2", "--data", mnist_small_npz,
                           "--epochs", "4", "--out", str(out), *sets],
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]                 # one writer: no duplicated rows
    steps = [json.loads(line)["step"] for line in (out / "steps.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
    # Each rank takes half of the 700 training images per epoch: 350 / 16 → 22 steps per epoch.
    assert max(steps) <= 4 * 22
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written.count("summary.json") == 1 and not any(".tmp" in w for w in written)
    # The same config on one process (twice the batch, same global batch per step) lands in the same band.
    single = train({"data": {"spec": mnist_small_npz}}, out=tmp_path / "single", show_progress=False,
                   overrides=["model.name=lenet5", "train.batch_size=32", "train.threads=1", "data.augment=[]",
                              "train.epochs=4"])
    assert summary["test_acc"] > 0.8
    assert abs(summary["test_acc"] - single["test_acc"]) < 0.08


@pytest.fixture
def postgres_url():
    import tempfile

    from pg_server import available, postgres_server
    pytest.importorskip("psycopg")
    if not available():
        pytest.skip("PostgreSQL server binaries (Debian package postgresql) are not installed")
    workdir = tempfile.mkdtemp(prefix="deeprecipe-pg-")
    os.chmod(workdir, 0o777)  # the server runs as the postgres user
    with postgres_server(workdir) as url:
        yield url


def test_two_search_workers_share_one_postgres_study(tmp_path, mnist_small_npz, postgres_url):
    import optuna
    space = "search.space={optim.lr: {log: [0.001, 0.05]}}"
    total = 4
    workers = [subprocess.Popen([sys.executable, "-m", "deeprecipe", "search", "--data", mnist_small_npz,
                                 "--trials", str(total), "--storage", postgres_url, "--study", "shared",
                                 "--out", str(tmp_path / f"w{i}"), "--set", "model.name=lenet5",
                                 "--set", "search.epochs=1", "--set", "search.pruner=none", "--set", "train.threads=1",
                                 "--set", space], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
               for i in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    real = [t for t in study.trials if not t.user_attrs.get("over_budget")]
    assert sorted(t.number for t in real) == list(range(total))         # each trial once, none lost
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in real)
    lrs = [t.params["optim.lr"] for t in real]
    assert len(set(lrs)) == total                                       # no trial duplicated
    best = max(real, key=lambda t: t.value)
    # The worker that finished last saw every trial, so one of the two best.yaml files holds the study's best.
    bests = [yaml_load(tmp_path / f"w{i}" / "best.yaml")["optim"]["lr"] for i in range(2)]
    assert best.params["optim.lr"] in bests


def yaml_load(path):
    import yaml
    return yaml.safe_load(path.read_text())
