"""Saving matplotlib figures atomically with the Agg backend (no display needed)."""
from __future__ import annotations

import io
from pathlib import Path

from .utils import atomic_write_bytes


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)
