"""Decode a photo folder once into a uint8 cache, reused by later epochs and later runs.

The cache of a folder is one raw (N, C, S, S) uint8 file plus ``index.json``, under
``data.cache_dir`` / ``$DEEPRECIPE_CACHE`` / ``~/.cache/deeprecipe``. Each row is keyed by the file's path
(relative to the folder), size and mtime: unchanged files are copied from the previous cache, new or
changed ones decoded (in threads: PIL releases the GIL while decoding). A cache that fits under
``data.memory_limit_mb`` is read into memory; a bigger one is memory-mapped, so memory stays bounded.
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..utils import atomic_write_text, note
from .decode import decode_reduced
from .resize import centre_view, photo_image_size, resolve_policy, stored_size
from .sources import FolderScan, ImageSet, _check_usable, _drop_empty_classes, failure_reason, note_skipped, scan_folder

CACHE_VERSION = 1


def cache_root(cache_dir: str | None = None) -> Path:
    return Path(cache_dir or os.environ.get("DEEPRECIPE_CACHE") or "~/.cache/deeprecipe").expanduser()


def _file_key(root: Path, f: Path) -> list:
    st = f.stat()
    return [str(f.relative_to(root)), st.st_size, st.st_mtime_ns]


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "index.json").read_text())
        if index.get("version") == CACHE_VERSION and (folder / index["data"]).is_file():
            return index
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache, or a damaged one: decode again
    return {"rows": [], "skipped": [], "data": None}


class DecodedCache:
    """The decoded squares of one folder at one stored size, policy and channel count."""

    def __init__(self, scan: FolderScan, side: int, policy: str, channels: int, centre_crop: int | None,
                 cache_dir: str | None = None):
        self.scan, self.side, self.policy, self.channels, self.centre_crop = scan, side, policy, channels, centre_crop
        ident = f"{scan.root.resolve()}|{side}|{policy}|{channels}|{centre_crop}|v{CACHE_VERSION}"
        self.folder = cache_root(cache_dir) / hashlib.sha1(ident.encode()).hexdigest()[:20]
        self.row_shape = (channels, side, side)

    def _open(self, name: str, rows: int, mode: str) -> np.memmap | np.ndarray:
        if rows == 0:
            return np.zeros((0, *self.row_shape), dtype=np.uint8)
        return np.memmap(self.folder / name, dtype=np.uint8, mode=mode, shape=(rows, *self.row_shape))

    def _decode_into(self, out: np.ndarray, row: int, path: Path) -> str | None:
        try:
            out[row] = decode_reduced(path, self.side, self.policy, self.channels, self.centre_crop).transpose(2, 0, 1)
        except Exception as err:  # any decoder failure means: skip this file and name it
            return failure_reason(err)
        return None

    def build(self) -> tuple[str, list[int], list[tuple[str, str]]]:
        """Bring the cache up to date with the folder: (data file name, kept file indices, skipped files)."""
        root, files = self.scan.root, self.scan.files
        keys = [_file_key(root, f) for f in files]
        index = _read_index(self.folder)
        old_rows = {tuple(k): i for i, k in enumerate(index["rows"])}
        old_skipped = {tuple(k[:3]): k[3] for k in index["skipped"]}
        plan = []   # per file: ("old", row) | ("skip", reason) | ("new", None)
        for k in keys:
            if tuple(k) in old_rows:
                plan.append(("old", old_rows[tuple(k)]))
            elif tuple(k) in old_skipped:
                plan.append(("skip", old_skipped[tuple(k)]))
            else:
                plan.append(("new", None))
        kept = [i for i, (what, _) in enumerate(plan) if what != "skip"]
        if all(what == "old" for what, _ in plan if what != "skip") and \
                [plan[i][1] for i in kept] == list(range(len(index["rows"]))):
            return index["data"], kept, [(str(files[i]), r) for i, (w, r) in enumerate(plan) if w == "skip"]
        return self._rebuild(keys, plan, index)

    def _rebuild(self, keys: list, plan: list, index: dict) -> tuple[str, list[int], list[tuple[str, str]]]:
        from ..progress import track
        files = self.scan.files
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"images-{uuid.uuid4().hex[:12]}.u8"
        rows = [i for i, (what, _) in enumerate(plan) if what != "skip"]
        out = self._open(name, len(rows), "w+")
        old = self._open(index["data"], len(index["rows"]), "r") if index["data"] else None
        todo = []
        for row, i in enumerate(rows):
            if plan[i][0] == "old":
                out[row] = old[plan[i][1]]
            else:
                todo.append((row, i))
        failed: dict[int, str] = {}
        if todo:
            note(f"decoding {len(todo)} image(s) of {self.scan.root} at {self.side} px into the cache {self.folder}")
            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                results = pool.map(lambda t: (t[1], self._decode_into(out, t[0], files[t[1]])), todo)
                for i, reason in track(results, f"decoding {self.scan.root.name}", len(todo)):
                    if reason is not None:
                        failed[i] = reason
        kept = [i for i in rows if i not in failed]
        if failed:  # close the gaps the failed files left, in place, then trim the file
            for new_row, old_row in enumerate(r for r, i in enumerate(rows) if i not in failed):
                if new_row != old_row:
                    out[new_row] = out[old_row]
        if isinstance(out, np.memmap):
            out.flush()
            del out
            os.truncate(self.folder / name, len(kept) * int(np.prod(self.row_shape)))
        skipped = [(i, plan[i][1]) for i, (w, _) in enumerate(plan) if w == "skip"] + sorted(failed.items())
        new_index = {"version": CACHE_VERSION, "data": name if kept else None, "shape": list(self.row_shape),
                     "rows": [keys[i] for i in kept], "skipped": [keys[i] + [r] for i, r in skipped]}
        atomic_write_text(self.folder / "index.json", json.dumps(new_index))
        if index["data"] and index["data"] != name:
            (self.folder / index["data"]).unlink(missing_ok=True)
        return name, kept, [(str(files[i]), r) for i, r in sorted(skipped)]

    def load(self, name: str, rows: int, memory_limit_mb: float) -> torch.Tensor:
        """The cached rows as a uint8 tensor: read into memory when small enough, else memory-mapped."""
        if rows == 0:
            return torch.zeros((0, *self.row_shape), dtype=torch.uint8)
        path = self.folder / name
        if rows * np.prod(self.row_shape) <= memory_limit_mb * 2**20:
            return torch.from_numpy(np.fromfile(path, dtype=np.uint8).reshape(rows, *self.row_shape))
        note(f"note: the decoded cache ({path.stat().st_size / 2**20:,.0f} MB) exceeds data.memory_limit_mb; "
             "memory-mapping it")
        return torch.from_numpy(self._open(name, rows, "c"))  # copy-on-write: writable, nothing copied


def open_photo_folder(data_cfg) -> ImageSet | None:
    """A photo folder under resize=crop/pad, decoded through the cache; None for other specs and squash."""
    spec = str(data_cfg.spec).strip()
    if not Path(spec).expanduser().is_dir() or data_cfg.resize == "squash":
        return None
    scan = scan_folder(spec)
    policy = resolve_policy(data_cfg, scan.files)
    if policy == "squash":
        return None
    image_size = photo_image_size(data_cfg)
    # Resolved into the config, so config.yaml, the checkpoint and `predict` know how inputs were made.
    data_cfg.resize, data_cfg.image_size = policy, image_size
    side = stored_size(image_size, data_cfg.crop_pct, policy)
    cache = DecodedCache(scan, side, policy, data_cfg.channels or 3, image_size if policy == "crop" else None,
                         data_cfg.cache_dir)
    name, kept, skipped = cache.build()
    note_skipped(skipped)
    stored = cache.load(name, len(kept), data_cfg.memory_limit_mb)
    labels, classes = _drop_empty_classes([scan.labels[i] for i in kept], scan.classes) if kept else ([], scan.classes)
    ds = ImageSet(images=centre_view(stored, image_size) if policy == "crop" else stored,
                  labels=torch.tensor(labels, dtype=torch.int64), classes=classes, splits=scan.given_splits(kept),
                  paths=[str(scan.files[i]) for i in kept], skipped=skipped, name=str(scan.root),
                  stored=stored if policy == "crop" else None)
    _check_usable(ds, spec)
    return ds


def decode_for_run(path: str | Path, data_cfg, channels: int) -> torch.Tensor | None:
    """One image file as the model saw evaluation images — uint8 (C, image_size, image_size) — for runs
    trained under resize=crop/pad; None for other runs (their images are squashed as before)."""
    if data_cfg.resize not in ("crop", "pad") or not data_cfg.image_size:
        return None
    side = stored_size(data_cfg.image_size, data_cfg.crop_pct, data_cfg.resize)
    square = torch.from_numpy(decode_reduced(path, side, data_cfg.resize, channels,
                                             data_cfg.image_size if data_cfg.resize == "crop" else None))
    square = square.permute(2, 0, 1)
    return centre_view(square[None], data_cfg.image_size)[0].contiguous()
