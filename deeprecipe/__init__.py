"""deeprecipe: train deep convolutional image classifiers the way practitioners do, and automate the recipe."""
from __future__ import annotations

__version__ = "0.1.0"

import types

from . import train as _train_package
from .errors import DeepRecipeError
from .models import create_model, list_models


class _CallableTrainPackage(types.ModuleType):
    """`deeprecipe.train` names both the training subpackage and the public `train()` function. Python binds
    the subpackage to that name as soon as anything imports `deeprecipe.train.*` (every run does), which made a
    second `deeprecipe.train(...)` call a "module is not callable" error; so the subpackage itself is callable
    and forwards to `deeprecipe.api.train`."""

    def __call__(self, *args, **kwargs):
        from .api import train
        return train(*args, **kwargs)


_train_package.__class__ = _CallableTrainPackage

__all__ = ["DeepRecipeError", "create_model", "list_models", "train", "evaluate", "predict", "__version__"]


def __getattr__(name):
    # The training API pulls in the data/training stack; import it only when asked for.
    if name in ("evaluate", "predict"):
        from . import api
        return getattr(api, name)
    if name == "load_run":
        from . import loaded
        return loaded.load_run
    raise AttributeError(name)
