"""Readers that turn a data spec (``builtin:mnist5k``, ``npz:PATH``, a folder, …) into an ImageSet.

Every reader returns the whole set as one uint8 tensor (N, C, H, W): small and medium sets train
fastest from memory. Readers register themselves by spec prefix, like timm's model registry.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torchvision.io import ImageReadMode, decode_image, read_file

from ..errors import DeepRecipeError
from ..progress import track
from ..utils import note

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}


@dataclass
class ImageSet:
    images: torch.Tensor                  # uint8 (N, C, H, W)
    labels: torch.Tensor                  # int64 (N,)
    classes: list[str]
    splits: dict[str, np.ndarray] | None = None   # given split (folder train/val/test); None = split for me
    paths: list[str] | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    name: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]


_READERS: dict[str, Callable[[str], ImageSet]] = {}


def register_source(prefix: str):
    def deco(fn: Callable[[str], ImageSet]):
        _READERS[prefix] = fn
        return fn
    return deco


def list_sources() -> list[str]:
    return sorted(_READERS) + ["PATH (image folder)"]


def load_source(spec: str) -> ImageSet:
    """Read a data spec; unknown prefixes and missing paths are DeepRecipeErrors naming the spec."""
    spec = str(spec).strip()
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _READERS:
        ds = _READERS[prefix](rest)
    elif sep and len(prefix) > 1 and not Path(spec).exists():
        raise DeepRecipeError(f"unknown data spec prefix {prefix!r} in {spec!r}",
                              f"use one of: {', '.join(list_sources())}")
    else:
        ds = read_folder(spec)
    ds.name = ds.name or spec
    _check_usable(ds, spec)
    return ds


def _check_usable(ds: ImageSet, spec: str) -> None:
    if len(ds) == 0:
        raise DeepRecipeError(f"{spec}: no usable images found", "point --data at a folder of class sub-folders holding images")
    present = torch.unique(ds.labels).numel()
    if present < 2:
        raise DeepRecipeError(f"{spec}: only one class has images ({ds.classes[int(ds.labels[0])]!r})",
                              "a classifier needs at least two classes with images")


# ---------------------------------------------------------------------------------------------
# array-backed sources

def from_arrays(x: np.ndarray, y: np.ndarray, classes: list[str] | None, where: str) -> ImageSet:
    """Validate (N,H,W[,C]) images and (N,) labels and wrap them; every problem names `where`."""
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim not in (3, 4):
        raise DeepRecipeError(f"{where}: x has shape {x.shape}", "x must be (N, H, W) or (N, H, W, C)")
    if y.ndim != 1 or len(y) != len(x):
        raise DeepRecipeError(f"{where}: y has shape {y.shape} but x holds {len(x)} images", "give one label per image")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number):
            raise DeepRecipeError(f"{where}: x has dtype {x.dtype}", "store images as uint8 0..255")
        if not np.isfinite(x).all():
            raise DeepRecipeError(f"{where}: x contains NaN or inf", "clean the array; images must be finite")
        lo, hi = float(x.min()), float(x.max())
        if lo >= 0 and hi <= 1.0 and np.issubdtype(x.dtype, np.floating):
            x = np.round(x * 255)
        elif lo < 0 or hi > 255:
            raise DeepRecipeError(f"{where}: x values span {lo:g}..{hi:g}", "store images as uint8 0..255 (or floats 0..1)")
        x = x.astype(np.uint8)
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all() and (y == np.round(y)).all():
            y = y.astype(np.int64)
        elif classes is None and y.dtype.kind in "USO":
            classes = sorted({str(v) for v in y})
            index = {c: i for i, c in enumerate(classes)}
            y = np.array([index[str(v)] for v in y], dtype=np.int64)
        else:
            raise DeepRecipeError(f"{where}: labels y have dtype {y.dtype}", "labels must be integers 0..C-1 or class-name strings")
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DeepRecipeError(f"{where}: label {int(y.min())} is negative", "labels must be 0..C-1")
    n_classes = len(classes) if classes is not None else (int(y.max()) + 1 if len(y) else 0)
    if len(y) and y.max() >= n_classes:
        raise DeepRecipeError(f"{where}: label {int(y.max())} is out of range for {n_classes} classes",
                              "labels must be 0..C-1")
    if classes is None:
        classes = [str(i) for i in range(n_classes)]
    t = torch.from_numpy(np.ascontiguousarray(x))
    t = t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()
    if t.shape[1] not in (1, 3):
        if t.shape[1] == 4:
            t = t[:, :3].contiguous()
        else:
            raise DeepRecipeError(f"{where}: images have {t.shape[1]} channels", "use 1 (gray) or 3 (RGB) channels")
    return ImageSet(images=t, labels=torch.from_numpy(y), classes=list(classes))


@register_source("builtin")
def read_builtin(name: str) -> ImageSet:
    name = name.strip()
    if name == "mnist5k":
        with resources.files("deeprecipe.builtin").joinpath("mnist5k.npz").open("rb") as f:
            d = np.load(f)
            ds = from_arrays(d["x"], d["y"], [str(i) for i in range(10)], "builtin:mnist5k")
    elif name == "digits":
        d = load_digits()
        # 0..16 intensities → 0..255 so every source is uint8.
        x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
        ds = from_arrays(x, d.target, [str(i) for i in range(10)], "builtin:digits")
    else:
        raise DeepRecipeError(f"unknown built-in dataset {name!r}", "use builtin:mnist5k or builtin:digits")
    ds.name = f"builtin:{name}"
    return ds


def require_file(p: Path, kind: str, holds: str) -> None:
    """A `kind:PATH` spec must name a file; a folder there most likely meant the folder spec (the plain path)."""
    if p.is_dir():
        raise DeepRecipeError(f"{kind}:{p} is a folder, not a .{kind} file",
                              f"for a folder of class sub-folders write --data {p}; "
                              f"{kind}:PATH names a file {holds}")
    if not p.is_file():
        raise DeepRecipeError(f"{kind} file {p} does not exist", f"give {kind}:PATH to a file {holds}")


@register_source("npz")
def read_npz(path: str) -> ImageSet:
    p = Path(path).expanduser()
    require_file(p, "npz", "with arrays x and y")
    try:
        d = np.load(p, allow_pickle=False)
        keys = set(d.files)
    except Exception as err:  # zip/format errors from numpy are many kinds
        raise DeepRecipeError(f"{p} is not a readable .npz file ({type(err).__name__})",
                              "save it with numpy.savez(path, x=images, y=labels)") from None
    missing = {"x", "y"} - keys
    if missing:
        raise DeepRecipeError(f"{p} lacks array(s) {', '.join(sorted(missing))} (has {', '.join(sorted(keys)) or 'none'})",
                              "save it with numpy.savez(path, x=images, y=labels)")
    try:
        x, y = d["x"], d["y"]
        classes = [str(c) for c in d["classes"]] if "classes" in keys else None
    except ValueError:
        raise DeepRecipeError(f"{p} holds object arrays", "store x as uint8 and y as integers (no pickled objects)") from None
    ds = from_arrays(x, y, classes, str(p))
    ds.name = f"npz:{p}"
    return ds


# ---------------------------------------------------------------------------------------------
# image folders

def decode_image_file(path: Path) -> torch.Tensor:
    """Decode one image file to uint8 (C, H, W) with C = 1 (gray) or 3 (RGB).

    A bad file raises DeepRecipeError naming the file only: torchvision's own messages carry source paths
    from its build machine, which mean nothing to a user."""
    path = Path(path)
    with warnings.catch_warnings():
        # torchvision 0.29 flags its decoders as deprecated in favour of TorchCodec; they still work and are the
        # decoders DESIGN.md chose. Revisit when torchvision drops them.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            data = read_file(str(path))
        except RuntimeError:
            raise DeepRecipeError(f"{path.name}: cannot be read", "check that the file exists and is readable") from None
        try:
            if data.numel() == 0:
                raise ValueError("empty file")
            img = decode_image(data, mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            raise DeepRecipeError(f"{path.name}: not an image, or a format that cannot be decoded",
                                  "give JPEG, PNG, WebP or GIF files") from None
    if img.dtype != torch.uint8:  # 16-bit PNGs decode to uint16
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    if img.ndim == 4:  # animated GIF: first frame
        img = img[0]
    if torch.equal(img[0], img[1]) and torch.equal(img[1], img[2]):
        img = img[:1]
    return img


def _scan_classes(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(s.startswith(".") for s in p.relative_to(folder).parts))


def conform(images: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Convert uint8 (N, C, H, W) images to `channels` (1 or 3) and `size` (H, W)."""
    if images.shape[1] != channels:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:  # ITU-R 601 luma, as PIL's convert("L")
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images[:, :3].float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    if tuple(images.shape[2:]) != tuple(size):
        images = F.interpolate(images.float(), size=tuple(size), mode="bilinear", antialias=True,
                               align_corners=False).round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


def unify_images(images: list[torch.Tensor], size: tuple[int, int] | None = None,
                 channels: int | None = None, where: str = "") -> torch.Tensor:
    """Stack images of mixed sizes/channel counts into one (N, C, H, W) uint8 tensor, with one note."""
    if channels is None:
        channels = 3 if any(im.shape[0] == 3 for im in images) else 1
    if size is None:
        size = Counter(tuple(im.shape[1:]) for im in images).most_common(1)[0][0]
    out = torch.empty((len(images), channels, *size), dtype=torch.uint8)
    resized = converted = 0
    for i, im in enumerate(images):
        converted += im.shape[0] != channels
        resized += tuple(im.shape[1:]) != tuple(size)
        out[i] = conform(im[None], channels, size)[0]
    if resized or converted:
        bits = []
        if resized:
            bits.append(f"resized {resized} image(s) to {size[0]}×{size[1]}")
        if converted:
            bits.append(f"converted {converted} image(s) to {'RGB' if channels == 3 else 'grayscale'}")
        note(f"note: {where}: " + "; ".join(bits))
    return out


def _drop_empty_classes(labels: list[int], classes: list[str]) -> tuple[list[int], list[str]]:
    """Leave out class folders that gave no usable image (a class with no examples cannot be learned)."""
    present = sorted(set(labels))
    if len(present) == len(classes):
        return labels, classes
    empty = [c for i, c in enumerate(classes) if i not in set(present)]
    note(f"note: left out {len(empty)} class folder(s) with no usable images: {', '.join(empty)}")
    remap = {old: new for new, old in enumerate(present)}
    return [remap[l] for l in labels], [classes[i] for i in present]


@dataclass
class FolderScan:
    """The files of an image folder and their labels, before any decoding."""
    root: Path
    files: list[Path]
    labels: list[int]
    classes: list[str]
    groups: list[str]          # per file: 'all', or 'train'/'val'/'test' when the folder gives a split

    def given_splits(self, keep: list[int] | None = None) -> dict[str, np.ndarray] | None:
        groups = np.array(self.groups if keep is None else [self.groups[i] for i in keep])
        if len(groups) == 0 or (groups == "all").all():
            return None
        return {s: np.flatnonzero(groups == s) for s in ("train", "val", "test") if (groups == s).any()}


def scan_folder(path: str) -> FolderScan:
    """Class sub-folders (or train/val/test sub-folders of class sub-folders) → files and labels."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DeepRecipeError(f"data path {root} does not exist",
                              "give a folder of class sub-folders, or a spec such as builtin:mnist5k, npz:PATH")
    if not root.is_dir():
        raise DeepRecipeError(f"data path {root} is a file, not a folder",
                              "for an array file write npz:PATH; for a CSV write csv:PATH")
    subdirs = {p.name for p in _scan_classes(root)}
    split_names = [s for s in ("train", "val", "test") if s in subdirs]
    if "train" in split_names and len(split_names) >= 2:
        groups = {s: root / s for s in split_names}
    else:
        groups = {"all": root}
    classes = sorted({c.name for g in groups.values() for c in _scan_classes(g)})
    if not classes:
        raise DeepRecipeError(f"{root} has no class sub-folders", "put each class's images in its own sub-folder")
    index = {c: i for i, c in enumerate(classes)}
    found = [(g, c, f) for g, gp in groups.items() for c in _scan_classes(gp) for f in _scan_files(c)]
    return FolderScan(root, [f for _, _, f in found], [index[c.name] for _, c, _ in found], classes,
                      [g for g, _, _ in found])


def read_folder(path: str, size: tuple[int, int] | None = None, channels: int | None = None) -> ImageSet:
    scan = scan_folder(path)
    root = scan.root
    images: list[torch.Tensor] = []
    kept: list[int] = []
    skipped: list[tuple[str, str]] = []
    for i, f in enumerate(track(scan.files, description=f"reading {root.name or root}")):
        try:
            images.append(decode_image_file(f))
        except Exception as err:  # any decoder failure means: skip this file and say so
            skipped.append((str(f), str(err).splitlines()[0][:80] if str(err) else type(err).__name__))
            continue
        kept.append(i)
    if skipped:
        shown = ", ".join(s for s, _ in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        note(f"note: skipped {len(skipped)} unreadable file(s): {shown}")
    if not images:
        raise DeepRecipeError(f"{root}: no readable images in its class sub-folders", "add image files (PNG, JPEG, …)")
    labels, classes = _drop_empty_classes([scan.labels[i] for i in kept], scan.classes)
    stacked = unify_images(images, size=size, channels=channels, where=str(root))
    return ImageSet(images=stacked, labels=torch.tensor(labels, dtype=torch.int64),
                    classes=classes, splits=scan.given_splits(kept), paths=[str(scan.files[i]) for i in kept],
                    skipped=skipped, name=str(root))


# Release formats (CIFAR, MNIST IDX, CSV) register themselves on import.
from . import formats as _formats  # noqa: E402,F401
