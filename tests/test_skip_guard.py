"""The CI skip guard itself: with CI set, a skip for any reason but a missing GPU fails the session."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

INNER = '''
import pytest

def test_passes():
    pass

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no CUDA device visible")

def test_needs_a_compiler():
    pytest.skip("no C++ compiler")

@pytest.mark.skipif(True, reason="onnxruntime is not installed")
def test_needs_onnx():
    pass

@pytest.mark.xfail(reason="a declared known failure is not a skip")
def test_known_failure():
    assert False
'''


def _session(folder: Path, ci: bool, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args, str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_on_ci_only_gpu_skips_pass(tmp_path):
    (tmp_path / "conftest.py").write_text("from skip_guard import register as pytest_configure\n")
    (tmp_path / "test_inner.py").write_text(INNER)
    local = _session(tmp_path, ci=False)
    assert local.returncode == 0, local.stdout  # off CI a skip is only reported
    ci = _session(tmp_path, ci=True)
    assert ci.returncode == 1, ci.stdout
    listed = ci.stdout.split("skips not allowed on CI")[1]
    assert "test_needs_a_compiler: no C++ compiler" in listed
    assert "test_needs_onnx: onnxruntime is not installed" in listed
    assert "test_needs_a_gpu" not in listed and "test_known_failure" not in listed
    only_gpu = _session(tmp_path, ci=True, args=("-k", "passes or gpu or known"))
    assert only_gpu.returncode == 0, only_gpu.stdout
