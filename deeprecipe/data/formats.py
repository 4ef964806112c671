"""Readers for the public release formats: CIFAR python pickles, MNIST IDX files and path,label CSVs.

Each registers itself by spec prefix in ``sources``. A release's own train/test split is kept as
the ImageSet's given split, so the official test images are never trained on.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import importlib
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import DeepRecipeError
from ..progress import track
from ..utils import note
from .sources import ImageSet, decode_image_file, from_arrays, register_source, require_file, unify_images


# ------------------------------------------------------------------------------------------ CIFAR
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other global is refused.

    CIFAR batches are dicts of lists, bytes and uint8 arrays. Arbitrary globals in a pickle can run
    code, so only numpy's array-reconstruction helpers are resolved.
    """

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if module == "_codecs":
            return codecs.encode
        try:
            mod = importlib.import_module(module.replace("numpy.core", "numpy._core"))
        except ImportError:
            mod = importlib.import_module(module)
        return getattr(mod, name)


def load_safe_pickle(path: Path) -> dict:
    """A CIFAR-style pickle as a dict with str keys; bad or unsafe files are DeepRecipeErrors."""
    try:
        with open(path, "rb") as f:
            obj = _ArrayOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise DeepRecipeError(f"{path} is not a readable CIFAR pickle ({err})",
                              "use the python-pickle release (cifar-10-python.tar.gz), extracted") from None
    if not isinstance(obj, dict):
        raise DeepRecipeError(f"{path} does not hold a dict", "use the python-pickle CIFAR release")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(values) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = load_safe_pickle(path)
    if "data" not in d or label_key not in d:
        raise DeepRecipeError(f"{path} lacks 'data' or {label_key!r} (has {', '.join(sorted(d))})",
                              "use the python-pickle CIFAR release")
    data = np.asarray(d["data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] % 3:
        raise DeepRecipeError(f"{path}: data has shape {data.shape}", "expected (N, 3·H·W) rows, as in the CIFAR release")
    side = int(round((data.shape[1] // 3) ** 0.5))
    return data.reshape(-1, 3, side, side).transpose(0, 2, 3, 1), np.asarray(d[label_key], dtype=np.int64)


def _read_cifar(path: str, train_files: list[str], test_files: list[str], meta_file: str, names_key: str,
                label_key: str, kind: str) -> ImageSet:
    root = Path(path).expanduser()
    if root.is_dir() and not (root / meta_file).exists():  # the archive's own sub-folder
        inner = [p for p in root.iterdir() if p.is_dir() and (p / meta_file).exists()]
        root = inner[0] if len(inner) == 1 else root
    missing = [f for f in train_files + test_files + [meta_file] if not (root / f).is_file()]
    if not root.is_dir() or missing:
        raise DeepRecipeError(f"{kind}:{path}: missing {', '.join(missing) if root.is_dir() else 'folder'}",
                              f"point {kind}: at the extracted python release folder holding {', '.join(train_files[:2])}…")
    classes = _names(load_safe_pickle(root / meta_file).get(names_key, []))
    parts = [_cifar_batch(root / f, label_key) for f in train_files + test_files]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    n_train = sum(len(p[1]) for p in parts[:len(train_files)])
    ds = from_arrays(x, y, classes or None, f"{kind}:{root}")
    ds.splits = {"train": np.arange(n_train), "test": np.arange(n_train, len(y))}
    ds.name = f"{kind}:{root}"
    return ds


@register_source("cifar10")
def read_cifar10(path: str) -> ImageSet:
    return _read_cifar(path, [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                       "label_names", "labels", "cifar10")


@register_source("cifar100")
def read_cifar100(path: str) -> ImageSet:
    return _read_cifar(path, ["train"], ["test"], "meta", "fine_label_names", "fine_labels", "cifar100")


# ------------------------------------------------------------------------------------------ MNIST IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as an array; the header gives dtype and shape."""
    raw = gzip.open(path, "rb").read() if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DeepRecipeError(f"{path} is not an IDX file (bad magic number)", "use the MNIST IDX files (…-idx3-ubyte[.gz])")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    body = raw[4 + 4 * ndim:]
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(body) != expected:
        raise DeepRecipeError(f"{path}: header says {dims} but the file holds {len(body)} data bytes",
                              "the file is truncated; download it again")
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find_idx(root: Path, split: str, what: str) -> Path | None:
    rank = "idx3" if what == "images" else "idx1"
    hits = sorted(p for p in root.iterdir() if p.is_file() and p.name.startswith(f"{split}-{what}") and rank in p.name)
    return hits[0] if hits else None


@register_source("mnist")
def read_mnist(path: str) -> ImageSet:
    """An MNIST-format folder (MNIST, Fashion-MNIST, KMNIST): train-* and t10k-* IDX files."""
    root = Path(path).expanduser()
    if root.is_dir() and _find_idx(root, "train", "images") is None and (root / "raw").is_dir():
        root = root / "raw"  # torchvision's layout
    if not root.is_dir():
        raise DeepRecipeError(f"mnist:{path}: folder does not exist", "point mnist: at the folder holding train-images-idx3-ubyte[.gz]")
    found = {(s, w): _find_idx(root, s, w) for s in ("train", "t10k") for w in ("images", "labels")}
    missing = [f"{s}-{w}" for (s, w), p in found.items() if p is None]
    if missing:
        raise DeepRecipeError(f"mnist:{root}: no {', '.join(missing)} IDX file(s)",
                              "the folder needs train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-…, t10k-labels-… (gz or not)")
    xs, ys = [], []
    for split in ("train", "t10k"):
        x, y = read_idx(found[(split, "images")]), read_idx(found[(split, "labels")])
        if len(x) != len(y):
            raise DeepRecipeError(f"mnist:{root}: {split} has {len(x)} images but {len(y)} labels", "use matching IDX files")
        xs.append(x)
        ys.append(y.astype(np.int64))
    n_train = len(ys[0])
    y_all = np.concatenate(ys)
    ds = from_arrays(np.concatenate(xs), y_all, [str(i) for i in range(int(y_all.max()) + 1)], f"mnist:{root}")
    ds.splits = {"train": np.arange(n_train), "test": np.arange(n_train, len(y_all))}
    ds.name = f"mnist:{root}"
    return ds


# ------------------------------------------------------------------------------------------ CSV
def parse_csv_spec(rest: str) -> tuple[Path, bool]:
    """'labels.csv' or 'labels.csv?allow_outside' → (path, may paths leave the CSV's folder)."""
    text, _, flag = rest.partition("?")
    if flag and flag not in ("allow_outside", "allow_outside=1", "allow_outside=true"):
        raise DeepRecipeError(f"csv:{rest}: unknown option {flag!r}", "the only option is csv:PATH?allow_outside")
    return Path(text).expanduser(), bool(flag)


def csv_rows(csv_path: Path, allow_outside: bool) -> list[tuple[Path, str]]:
    """(resolved image path, label) per row; a header row 'path,label' is skipped."""
    require_file(csv_path, "csv", "of path,label rows")
    base = csv_path.resolve().parent
    rows = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if len(row) < 2:
                raise DeepRecipeError(f"{csv_path} line {lineno}: expected 'path,label', got {','.join(row)!r}",
                                      "write one image path and its label per row")
            path_text, label = row[0].strip(), row[1].strip()
            if lineno == 1 and path_text.lower() in ("path", "file", "filename", "image") and label.lower() in ("label", "class"):
                continue
            p = Path(path_text).expanduser()
            full = (p if p.is_absolute() else base / p).resolve()
            if not allow_outside and not full.is_relative_to(base):
                raise DeepRecipeError(f"{csv_path} line {lineno}: {path_text!r} points outside {base}",
                                      f"move the images under {base}, or write csv:{csv_path}?allow_outside to allow it")
            rows.append((full, label))
    return rows


@register_source("csv")
def read_csv(rest: str) -> ImageSet:
    csv_path, allow_outside = parse_csv_spec(rest)
    rows = csv_rows(csv_path, allow_outside)
    if not rows:
        raise DeepRecipeError(f"{csv_path} has no rows", "write one 'path,label' row per image")
    classes = sorted({label for _, label in rows})
    index = {c: i for i, c in enumerate(classes)}
    images, labels, paths, skipped = [], [], [], []
    for path, label in track(rows, description=f"reading {csv_path.name}"):
        try:
            images.append(decode_image_file(path))
        except Exception as err:  # missing or undecodable file: skip it and say so
            skipped.append((str(path), str(err).splitlines()[0][:80] if str(err) else type(err).__name__))
            continue
        labels.append(index[label])
        paths.append(str(path))
    if skipped:
        note(f"note: {csv_path}: skipped {len(skipped)} unreadable file(s): {', '.join(s for s, _ in skipped[:5])}")
    if not images:
        raise DeepRecipeError(f"{csv_path}: none of its {len(rows)} image paths could be read", "check the paths in the CSV")
    return ImageSet(images=unify_images(images, where=str(csv_path)), labels=torch.tensor(labels, dtype=torch.int64),
                    classes=classes, paths=paths, skipped=skipped, name=f"csv:{csv_path}")
