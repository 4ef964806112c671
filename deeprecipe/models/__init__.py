"""Model zoo: one family per file, all in one registry."""
from .registry import create_model, list_models, register_model, get_builder, model_knobs, model_family
from .base import Classifier

__all__ = ["create_model", "list_models", "register_model", "get_builder", "model_knobs", "model_family", "Classifier"]
