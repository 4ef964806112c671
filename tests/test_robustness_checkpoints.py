"""Checkpoints survive crashes and refuse damaged or malicious files."""
import errno
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from deeprecipe.errors import DeepRecipeError
from deeprecipe.train.checkpoint import load_checkpoint, save_checkpoint


def _payload(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"model": {"w": torch.randn(64, 64, generator=g), "b": torch.zeros(64)}, "classes": ["a", "b"], "epoch": seed}


def test_round_trip_and_bit_flip_is_detected(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload())
    ck = load_checkpoint(path)
    assert torch.equal(ck["model"]["w"], _payload()["model"]["w"])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # the 64×64 weight fills most of the file: this lands in tensor bytes
    path.write_bytes(bytes(data))
    with pytest.raises(DeepRecipeError, match="corrupt|not a readable"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, _payload())
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DeepRecipeError, match="not a readable checkpoint"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/deeprecipe_pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, path)
    marker = "/tmp/deeprecipe_pwned"
    if os.path.exists(marker):
        os.unlink(marker)
    with pytest.raises(DeepRecipeError, match="refused"):
        load_checkpoint(path)
    assert not os.path.exists(marker)
    path.write_bytes(pickle.dumps(_Evil()))  # a bare pickle, not even a torch file
    with pytest.raises(DeepRecipeError):
        load_checkpoint(path)
    assert not os.path.exists(marker)


def test_full_disk_reports_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1))
    before = path.read_bytes()

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DeepRecipeError, match="No space left on device"):
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp files left behind


def test_sigkill_during_writes_never_leaves_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    script = textwrap.dedent(f"""
        import torch
        from deeprecipe.train.checkpoint import save_checkpoint
        i = 0
        while True:
            save_checkpoint({str(path)!r}, {{"model": {{"w": torch.full((512, 512), float(i))}}, "epoch": i}})
            i += 1
    """)
    def written():  # a finished write replaces the file (new inode), so this changes with every checkpoint
        return path.stat().st_ino if path.exists() else None

    for delay in (0.8, 1.3, 1.9):
        before = written()
        proc = subprocess.Popen([sys.executable, "-c", script])
        # Wait for this child's first checkpoint, so the kill lands among its writes; `import torch` in a fresh
        # process can take minutes on a loaded machine, hence the wide limit. A child that dies or never writes
        # fails the test here instead of being killed before it wrote anything.
        deadline = time.time() + 600
        while written() == before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if written() == before:
            proc.kill()
            pytest.fail(f"the child wrote no checkpoint (exit code {proc.wait()})")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = load_checkpoint(path)  # always the old or the new file, whole
        assert torch.all(ck["model"]["w"] == ck["epoch"])


def test_full_disk_during_training_is_one_clear_line(tmp_path, mnist_small_npz, monkeypatch, capsys):
    from deeprecipe.cli import main

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    code = main(["train", "--data", mnist_small_npz, "--model", "lenet5", "--epochs", "1", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) >= 1
    assert "No space left on device" in err[-1] and "Traceback" not in "\n".join(err)
