"""Experiments that check the practitioners' claims: one module per experiment, each registered with
@register_experiment when imported; the list below is all of them (a new experiment file is added here)."""
from . import (activations, degradation, depth_grid, double_descent, init, memorization,  # noqa: F401
               normalization, pseudo_labels, regularization, transfer, transfer_grid)
