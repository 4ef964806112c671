"""deeprecipe: train deep convolutional image classifiers the way practitioners do, and automate the recipe."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import DeepRecipeError
from .models import create_model, list_models

__all__ = ["DeepRecipeError", "create_model", "list_models", "train", "evaluate", "predict", "__version__"]


def __getattr__(name):
    # The training API pulls in the data/training stack; import it only when asked for.
    if name in ("train", "evaluate", "predict"):
        from . import api
        return getattr(api, name)
    if name == "load_run":
        from . import loaded
        return loaded.load_run
    raise AttributeError(name)
