"""Matplotlib on the Agg backend, and figures saved atomically as PNG."""
from __future__ import annotations

import io
from pathlib import Path

from ..utils import atomic_write_bytes


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_png(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
