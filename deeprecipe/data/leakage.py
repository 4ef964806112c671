"""Leak check: identical images (same uint8 bytes) in more than one split, and duplicates within one."""
from __future__ import annotations

import hashlib
from collections import defaultdict

import numpy as np
import torch


def image_hashes(images: torch.Tensor, chunk: int = 1024) -> list[bytes]:
    """A 16-byte BLAKE2 digest of each uint8 image's bytes (shape is part of the bytes' meaning: all equal).
    In chunks, so a memory-mapped or strided set is never copied whole."""
    out = []
    for start in range(0, images.shape[0], chunk):
        arr = images[start:start + chunk].contiguous().numpy().reshape(-1, int(np.prod(images.shape[1:])))
        out += [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in arr]
    return out


def leak_report(images: torch.Tensor, splits: dict[str, np.ndarray] | None = None, examples: int = 5) -> dict:
    """Counts of images shared between splits (e.g. 'train/test': 3) and duplicate groups overall."""
    hashes = image_hashes(images)
    where: dict[bytes, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        where[h].append(i)
    groups = [idx for idx in where.values() if len(idx) > 1]
    report = {"duplicate_groups": len(groups), "duplicate_images": sum(len(g) - 1 for g in groups),
              "cross_split": {}, "examples": []}
    if not splits:
        report["examples"] = [g[:5] for g in groups[:examples]]
        return report
    split_of = np.full(len(hashes), "", dtype=object)
    for name, idx in splits.items():
        split_of[np.asarray(idx, dtype=np.int64)] = name
    for g in groups:
        names = sorted({split_of[i] for i in g if split_of[i]})
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                key = f"{names[a]}/{names[b]}"
                report["cross_split"][key] = report["cross_split"].get(key, 0) + 1
        if len(names) > 1 and len(report["examples"]) < examples:
            report["examples"].append({n: [int(i) for i in g if split_of[i] == n] for n in names})
    return report


def leak_note(report: dict) -> str | None:
    if not report["cross_split"]:
        return None
    pairs = ", ".join(f"{k}: {v}" for k, v in report["cross_split"].items())
    return (f"warning: identical images appear in more than one split ({pairs}); "
            "test accuracy is optimistic — deduplicate the data (see `deeprecipe data inspect`)")
