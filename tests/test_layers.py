"""The import contract in pyproject.toml ([tool.importlinter]): imports point one way down the layers."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint(package_parent: Path, config: Path) -> subprocess.CompletedProcess:
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=package_parent, capture_output=True, text=True,
                          env={"PYTHONPATH": str(package_parent), "PATH": ""}, timeout=120)


def test_imports_point_one_way_down():
    result = _lint(ROOT, ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    shutil.copytree(ROOT / "deeprecipe", tmp_path / "deeprecipe", ignore=shutil.ignore_patterns("__pycache__", "*.npz"))
    trainer = tmp_path / "deeprecipe" / "train" / "trainer.py"
    trainer.write_text(trainer.read_text() + "\n\ndef _upward():\n    from ..api import train\n    return train\n")
    result = _lint(tmp_path, ROOT / "pyproject.toml")
    assert result.returncode != 0
    assert "deeprecipe.train.trainer -> deeprecipe.api" in result.stdout



def test_package_exports_the_training_api_lazily():
    import deeprecipe
    from deeprecipe import api, loaded
    assert (deeprecipe.evaluate, deeprecipe.predict) == (api.evaluate, api.predict)
    assert deeprecipe.load_run is loaded.load_run
    with pytest.raises(AttributeError):
        deeprecipe.no_such_name


def test_package_train_is_callable_whatever_was_imported_first(monkeypatch):
    """README calls `deeprecipe.train(...)` twice in a row; the first call imports the `deeprecipe.train`
    subpackage, which Python binds to the same name. The name must stay callable and reach `api.train`."""
    import deeprecipe
    import deeprecipe.train.trainer  # noqa: F401  (what every run imports)
    from deeprecipe import api
    calls = []
    monkeypatch.setattr(api, "train", lambda *a, **k: calls.append((a, k)) or {"test_acc": 1.0})
    assert deeprecipe.train("cfg.yaml", overrides=["train.epochs=1"]) == {"test_acc": 1.0}
    from deeprecipe import train
    assert train({"model": {"name": "mlp"}}) == {"test_acc": 1.0}
    assert calls == [(("cfg.yaml",), {"overrides": ["train.epochs=1"]}), (({"model": {"name": "mlp"}},), {})]
    assert deeprecipe.train.trainer.Trainer  # still the subpackage for everything else
