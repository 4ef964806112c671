"""Reusable matplotlib (Agg) figures: training curves, learning rate, confusion matrix, image grids.

Every function returns PNG bytes so callers can save them or embed them in HTML.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from .utils import atomic_write_bytes  # noqa: E402


def figure_png(fig, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes and free it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def save_png(fig, path: str | Path, dpi: int = 100) -> Path:
    """Render a figure and write it atomically (a crash never leaves half a PNG)."""
    atomic_write_bytes(path, figure_png(fig, dpi))
    return Path(path)


def pyplot():
    """matplotlib.pyplot on the Agg backend (for modules that draw their own figures)."""
    return plt


def curves_png(runs: dict[str, list[dict]]) -> bytes:
    """Loss and accuracy per epoch, train (solid) and val (dashed), one colour per run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, history) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        epochs = [r["epoch"] for r in history]
        label = f"{name} " if len(runs) > 1 else ""
        for ax, key in ((ax_loss, "loss"), (ax_acc, "acc")):
            ax.plot(epochs, [r[f"train_{key}"] for r in history], "-o", ms=3, color=colour, label=f"{label}train")
            val = [(r["epoch"], r[f"val_{key}"]) for r in history if r.get(f"val_{key}") is not None]
            if val:
                ax.plot(*zip(*val), "--s", ms=3, color=colour, label=f"{label}val")
    for ax, title in ((ax_loss, "loss"), (ax_acc, "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return figure_png(fig)


def lr_png(steps: list[dict]) -> bytes:
    """Learning rate (and training loss, on a second axis) over optimizer steps."""
    fig, ax = plt.subplots(figsize=(11, 3))
    x = [s["step"] for s in steps]
    ax.plot(x, [s["lr"] for s in steps], color="C0")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate", color="C0")
    ax.grid(alpha=0.3)
    if steps and "loss" in steps[0]:
        ax2 = ax.twinx()
        ax2.plot(x, [s["loss"] for s in steps], color="C1", alpha=0.6, lw=1)
        ax2.set_ylabel("batch loss", color="C1")
    ax.set_title("learning rate schedule")
    return figure_png(fig)


def confusion_png(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> bytes:
    """Confusion matrix, rows true, columns predicted; cells coloured by row-normalised rate."""
    cm = np.asarray(matrix, dtype=float)
    n = len(classes)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(12, max(4, 0.45 * n + 1.5))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), list(classes), rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), list(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_title("confusion matrix")
    return figure_png(fig)


def image_grid_png(images: np.ndarray, titles: Sequence[str] | None = None, cols: int = 8,
                   title_colours: Sequence[str] | None = None, suptitle: str | None = None) -> bytes:
    """A grid of uint8 images (N, C, H, W), one optional caption each."""
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.7 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = np.asarray(images[k])
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(np.transpose(img[:3], (1, 2, 0)))
        if titles is not None:
            ax.set_title(titles[k], fontsize=8, color=title_colours[k] if title_colours else "black")
    if suptitle:
        fig.suptitle(suptitle)
    return figure_png(fig)
