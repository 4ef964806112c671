"""Model zoo: one family per file, all in one registry.

Each family module registers its builders with @register_model when imported; the list below is the
whole zoo (a new family file is added here). `timm:NAME` models are built by timm_models.py instead.
"""
from . import (alexnet, allconv, convnet, convnext, densenet, efficientnet, googlenet, lenet,  # noqa: F401
               mlp, mobilenet, nin, resnet, shufflenet, squeezenet, vgg)
from .base import Classifier
from .registry import create_model, get_builder, list_models, model_family, model_knobs, register_model

__all__ = ["create_model", "list_models", "register_model", "get_builder", "model_knobs", "model_family", "Classifier"]
