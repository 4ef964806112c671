"""Built-in demonstration experiments, one module each, found by name (like the model registry).

An experiment is a function ``fn(quick: bool, out: Path) -> dict`` registered with
``@register_experiment("name")``; it writes its tables and plots under ``out`` and returns its results.
"""
from __future__ import annotations

import difflib
import importlib
import pkgutil
from pathlib import Path
from typing import Callable

from ..errors import DeepRecipeError

_EXPERIMENTS: dict[str, Callable[[bool, Path], dict]] = {}


def register_experiment(name: str):
    def deco(fn: Callable[[bool, Path], dict]):
        if name in _EXPERIMENTS:
            raise ValueError(f"experiment {name} registered twice")
        _EXPERIMENTS[name] = fn
        return fn
    return deco


def _load_all() -> None:
    """Import every experiment module so its decorator runs (cheap: modules import torch lazily)."""
    from .. import experiments as pkg
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "registry":
            importlib.import_module(f"{pkg.__name__}.{info.name}")


def list_experiments() -> list[str]:
    _load_all()
    return sorted(_EXPERIMENTS)


def run_experiment(name: str, quick: bool = False, out: str | Path | None = None) -> dict:
    _load_all()
    if name not in _EXPERIMENTS:
        close = difflib.get_close_matches(name, list(_EXPERIMENTS), n=3)
        raise DeepRecipeError(f"unknown experiment {name!r}",
                              f"did you mean {', '.join(close)}?" if close else "run `deeprecipe experiment` for the list")
    folder = Path(out) if out else Path("experiments") / name
    folder.mkdir(parents=True, exist_ok=True)
    return _EXPERIMENTS[name](quick, folder)
