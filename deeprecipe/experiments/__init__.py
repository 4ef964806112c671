"""Experiments that check the practitioners' claims: one module per experiment, each registered with
@register_experiment when imported; the list below is all of them (a new experiment file is added here)."""
from . import (activations, degradation, depth_grid, init, memorization, normalization, pseudo_labels,  # noqa: F401
               regularization, transfer, transfer_grid)
