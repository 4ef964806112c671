"""Reports, run tables, comparison, export, TensorBoard logging and the ready configs — on real short runs."""
from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeprecipe import api
from deeprecipe.cli import main
from deeprecipe.errors import DeepRecipeError
from deeprecipe.session import build_model

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def _has_tensorboard() -> bool:
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory, mnist_small_npz):
    """Three one-epoch runs that differ in learning rate (the second evaluates EMA weights, the last also logs to
    TensorBoard when it can)."""
    root = tmp_path_factory.mktemp("runs")
    runs = []
    for name, lr in (("a", 0.01), ("b", 0.002), ("c", 0.0005)):
        overrides = [f"data.spec={mnist_small_npz}", "train.epochs=2", "train.batch_size=64", "model.widths=[8,16]",
                     "model.convs=1", f"optim.lr={lr}", "log.steps_every=2"]
        if name == "b":
            overrides.append("regularize.ema=0.9")
        if name == "c" and _has_tensorboard():
            overrides.append("log.tensorboard=true")
        with pytest.MonkeyPatch.context() as mp:
            if name != "a":  # one report built by finish_run is enough (and saves time); b's is rebuilt below
                mp.setattr(api, "write_report_safely", lambda run_dir, data=None: None)
            api.train(overrides=overrides, out=root / name, show_progress=False)
        runs.append(root / name)
    return runs


@pytest.fixture(scope="module")
def mnist_tiny_npz(mnist_npz):
    """30 images per class: enough for a few training steps of a full-size recipe."""
    return mnist_npz(30)


def _sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([\w-]+)">(.*?)</section>', page, flags=re.S))


def _pngs(fragment: str) -> list[Image.Image]:
    out = []
    for b64 in re.findall(r'src="data:image/png;base64,([^"]+)"', fragment):
        img = Image.open(io.BytesIO(base64.b64decode(b64)))
        img.load()
        out.append(img)
    return out


# ------------------------------------------------------------------------------------------ report
def test_every_run_leaves_a_report_with_every_section(three_runs):
    run = three_runs[0]
    page = (run / "report.html").read_text(encoding="utf-8")  # written by finish_run itself
    sections = _sections(page)
    assert set(sections) == {"summary", "curves", "lr", "confusion", "per-class", "misclassified", "augment",
                             "diagnosis", "config"}
    assert 'class="error"' not in page
    for key in ("curves", "lr", "confusion", "misclassified", "augment"):
        images = _pngs(sections[key])
        assert len(images) == 1, key
        assert images[0].format == "PNG" and min(images[0].size) > 100, key
        # a real figure, not a blank canvas
        assert np.asarray(images[0].convert("L")).std() > 5, key
    summary = json.loads((run / "summary.json").read_text())
    assert f"{summary['test_acc']:.4f}" in sections["summary"]
    assert summary["evaluated_weights"] == "raw" and re.search(r"weights evaluated.*?>raw<", sections["summary"])
    rows = re.findall(r"<tr><td>([^<]+)</td>", sections["per-class"])
    assert rows == summary["classes"]
    assert "model:" in sections["config"] and "optim:" in sections["config"]
    assert sections["diagnosis"].strip()


def test_misclassified_section_counts_the_real_mistakes(three_runs):
    run = three_runs[0]
    with np.load(run / "test_predictions.npz") as z:
        wrong = int((z["probs"].argmax(1) != z["labels"]).sum())
        n = len(z["labels"])
    text = _sections((run / "report.html").read_text(encoding="utf-8"))["misclassified"]
    assert f"{wrong} of {n} test images are misclassified" in text


def test_most_confident_mistakes_orders_by_confidence():
    from deeprecipe.report import most_confident_mistakes
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.05, 0.95], [0.7, 0.3]])
    labels = np.array([0, 0, 0, 0, 1])
    assert most_confident_mistakes(probs, labels, 10).tolist() == [3, 1, 4, 2]
    assert most_confident_mistakes(probs, labels, 2).tolist() == [3, 1]


def test_report_command_rebuilds_and_diagnosis_is_shown(three_runs, tmp_path):
    import shutil
    run = tmp_path / "copy"
    shutil.copytree(three_runs[1], run)
    (run / "report.html").unlink(missing_ok=True)
    summary = json.loads((run / "summary.json").read_text())
    summary["diagnosis"] = {"verdict": "underfitting", "evidence": ["train accuracy 0.41 after 2 epochs"],
                            "advice": ["train longer"]}
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["report", str(run)]) == 0
    diag = _sections((run / "report.html").read_text(encoding="utf-8"))["diagnosis"]
    assert "underfitting" in diag and "train accuracy 0.41 after 2 epochs" in diag and "train longer" in diag
    assert summary["evaluated_weights"] == "ema"  # run b averages its weights: the report says so
    assert "EMA average (decay 0.9000)" in _sections((run / "report.html").read_text(encoding="utf-8"))["summary"]


def test_report_on_a_folder_without_a_run_is_one_line_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "summary.json" in capsys.readouterr().err


def test_a_failing_report_does_not_lose_the_run(three_runs, tmp_path, monkeypatch, capsys):
    import deeprecipe.report as report

    def broken(run_dir, data=None):
        raise RuntimeError("plotting exploded")
    monkeypatch.setattr(report, "build_report", broken)
    api.write_report_safely(tmp_path)  # must not raise
    assert "plotting exploded" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ runs, compare
def test_runs_table_sorts_and_lists_every_run(three_runs, capsys):
    from deeprecipe.runs import list_runs
    folder = three_runs[0].parent
    rows = list_runs(folder, sort="test_acc")
    accs = [json.loads((r / "summary.json").read_text())["test_acc"] for r in three_runs]
    assert [r["test_acc"] for r in rows] == sorted(accs, reverse=True)
    assert [r["name"] for r in list_runs(folder, sort="name")] == ["a", "b", "c"]
    assert all(r["epochs"] == 2 and r["model"] == "convnet" and r["best_val"] is not None for r in rows)
    assert main(["runs", str(folder), "--sort", "best_val"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("a", "b", "c")) and "test acc" in out
    assert main(["runs", str(folder), "--sort", "nonsense"]) == 2
    assert main(["runs", str(folder), "--out", "ignored.png"]) == 2  # no silently ignored options


def test_runs_shows_a_run_stopped_before_its_first_epoch_and_how_to_restart_it(tmp_path, mnist_npz, capsys):
    from deeprecipe.config import resolve_config
    from deeprecipe.runs import list_runs
    run = tmp_path / "runs" / "20260101-000000-lenet5"
    run.mkdir(parents=True)  # what a run killed during its first epoch leaves: config.yaml alone
    cfg = resolve_config(None, [f"data.spec={mnist_npz(10)}", "model.name=lenet5", "train.epochs=1"])
    (run / "config.yaml").write_text(cfg.to_yaml())
    [row] = list_runs(tmp_path / "runs")
    assert row["name"] == run.name and row["status"] == "unfinished" and row["model"] == "lenet5"
    assert main(["runs", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    [hint] = [line for line in out.splitlines() if "before its first epoch" in line]
    assert f"rm -r {run}" in hint
    restart = re.search(r"`deeprecipe (train [^`]+)`", hint).group(1).split()
    assert main(restart) == 0  # the advice works: the run trains where it was
    [row] = list_runs(tmp_path / "runs")
    assert row["status"] == "finished" and row["test_acc"] is not None
    (run / "summary.json").unlink()  # as if stopped after its epoch: last.pt is there to resume from
    from deeprecipe.runs import unfinished_advice
    [hint] = unfinished_advice(list_runs(tmp_path / "runs"))
    assert f"`deeprecipe train --resume {run}`" in hint and "after 1 epoch" in hint


def test_an_unfinished_k_fold_run_is_resumed_as_a_whole(tmp_path):
    from deeprecipe.config import resolve_config
    from deeprecipe.runs import list_runs, unfinished_advice
    run = tmp_path / "kfold"
    (run / "fold1").mkdir(parents=True)  # stopped in its first fold's second epoch
    for folder in (run, run / "fold1"):
        (folder / "config.yaml").write_text(resolve_config(None, ["data.folds=3"]).to_yaml())
    (run / "fold1" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "val_acc": 0.5}) + "\n")
    advice = unfinished_advice(list_runs(tmp_path))
    assert len(advice) == 2 and all(f"`deeprecipe train --resume {run}`" in line for line in advice), advice


def test_compare_overlays_curves_and_lists_differences(three_runs, tmp_path, capsys):
    from deeprecipe.runs import compare_runs
    result = compare_runs(three_runs, out=tmp_path / "cmp.png")
    assert result["differences"]["optim.lr"] == [0.01, 0.002, 0.0005]
    assert "model.name" not in result["differences"]
    img = Image.open(tmp_path / "cmp.png")
    assert img.format == "PNG" and img.size[0] > 300
    assert main(["runs", "compare", *map(str, three_runs), "--out", str(tmp_path / "cli.png")]) == 0
    out = capsys.readouterr().out
    assert "optim.lr" in out and (tmp_path / "cli.png").is_file()
    assert main(["runs", "compare", str(three_runs[0])]) == 2


# ------------------------------------------------------------------------------------------ export
def test_onnx_export_round_trips(three_runs, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from deeprecipe.export import export_run
    run = three_runs[0]
    result = export_run(run, "onnx", tmp_path / "m.onnx")
    assert result["parity"] is True and result["max_abs_diff"] <= 1e-4
    # a batch size the export never saw, through onnxruntime directly
    loaded = api.load_run(run, device="cpu")
    images = api.prepare_data(loaded.cfg).part("test")[0][:3]
    x = loaded.normalize(images).float()
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})[0]
    assert np.abs(got - loaded.logits(images).numpy()).max() <= 1e-4
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["classes"] == loaded.classes


def test_torchscript_export_via_cli(three_runs, capsys):
    assert main(["export", str(three_runs[1]), "--format", "torchscript"]) == 0
    assert "parity ok" in capsys.readouterr().out
    assert (three_runs[1] / "model.pt").is_file()
    assert main(["export", str(three_runs[1]), "--format", "tflite"]) == 2


# ------------------------------------------------------------------------------------------ tensorboard
def test_tensorboard_scalars_are_written(three_runs):
    if not _has_tensorboard():
        pytest.skip("tensorboard is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(three_runs[2] / "tensorboard"))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "lr"} <= set(tags)
    metrics = [json.loads(line) for line in (three_runs[2] / "metrics.jsonl").read_text().splitlines()]
    logged = [e.value for e in acc.Scalars("val/acc")]
    assert logged == pytest.approx([m["val_acc"] for m in metrics], rel=1e-6)


def test_tensorboard_missing_is_a_clear_error(monkeypatch, tmp_path):
    import sys
    from deeprecipe.tblog import tensorboard_writer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(DeepRecipeError, match="tensorboard"):
        tensorboard_writer(tmp_path)


# ------------------------------------------------------------------------------------------ configs
@pytest.fixture(scope="module")
def easy_npz(tmp_path_factory, mnist_arrays):
    """Zeros against ones, 100 of each: any working recipe separates them in a few dozen steps."""
    x, y = mnist_arrays
    idx = np.concatenate([np.flatnonzero(y == c)[:100] for c in (0, 1)])
    path = tmp_path_factory.mktemp("easy") / "zeros-ones.npz"
    np.savez(path, x=x[idx], y=y[idx])
    return f"npz:{path}"


@pytest.fixture(scope="module")
def local_resnet18(tmp_path_factory):
    """A torchvision ResNet-18 weights file (random weights: nothing is downloaded), as the transfer config expects."""
    import torch
    import torchvision
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18-local.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_every_model_a_ready_config_names_exists():
    from deeprecipe.config import resolve_config
    from deeprecipe.models import list_models
    assert {resolve_config(str(p)).model.name for p in CONFIGS} <= set(list_models())


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_ready_config_trains_a_real_classifier(path, easy_npz, local_resnet18, tmp_path, monkeypatch):
    """Each recipe as written (model, optimiser, schedule, augmentation) on an easy slice for a few dozen steps.
    A recipe trained from scratch must separate zeros from ones (chance: 0.5); the transfer recipe, whose weights
    here are random, must start from its weights file rather than a fresh initialisation."""
    import torch
    from deeprecipe.config import resolve_config
    cfg = resolve_config(str(path))
    monkeypatch.setattr(api, "write_report_safely", lambda run_dir, data=None: None)  # reports: tested above
    easy = [f"data.spec={easy_npz}", "data.image_size=null", "train.batch_size=16", "data.test_fraction=0.2"]
    if not cfg.model.pretrained:
        summary = api.train(str(path), overrides=[*easy, "train.epochs=5"], out=tmp_path / "run", show_progress=False)
        assert summary["test_acc"] >= 0.8, summary["test_acc"]
        return
    # One short epoch (ResNet-18 is slow on a CPU) on a fifth of the slice.
    api.train(str(path), overrides=[*easy, "train.epochs=1", "data.val_fraction=0.5", "data.test_fraction=0.3",
                                    f"model.pretrained={local_resnet18}"], out=tmp_path / "run", show_progress=False)
    start = torch.load(local_resnet18, weights_only=True)
    trained = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)["model"]
    fresh = build_model(resolve_config(str(path), [*easy, "model.pretrained=null"]), 2, (3, 28, 28)).state_dict()
    key_ours, key_file = "body.layer4.1.conv2.weight", "layer4.1.conv2.weight"
    moved = (trained[key_ours] - start[key_file]).norm()
    assert moved < 0.1 * (fresh[key_ours] - start[key_file]).norm()  # near its start, far from a fresh init
    assert trained["classifier.weight"].shape == (2, 512)
