"""Data layer: sources (readers), splits, statistics and loaders."""
from .sources import ImageSet, load_source, list_sources
from .split import split_indices
from .stats import channel_stats
from .loader import TensorLoader

__all__ = ["ImageSet", "load_source", "list_sources", "split_indices", "channel_stats", "TensorLoader"]
