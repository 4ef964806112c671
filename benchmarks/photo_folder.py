"""A folder of real-photo JPEGs of mixed sizes, built offline from photos that installed packages ship.

Each class is one source photo (scikit-image's bundled chelsea, coffee, rocket, … and scikit-learn's
china/flower samples); each file is a random crop of it (area 30–100 %, aspect 1:2 to 2:1, portrait and
landscape) scaled to a random size in a megapixel range and saved as a JPEG. Nothing is downloaded.
"""
from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

# Photos in scikit-image's own data folder (not fetched by pooch): name → file.
SKIMAGE_PHOTOS = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "hubble_deep_field.jpg",
                  "motorcycle_left.png", "retina.jpg", "ihc.png"]


def source_photos() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 RGB array) for every bundled photo, scikit-learn's two samples first."""
    out = []
    try:
        from sklearn.datasets import load_sample_images
        samples = load_sample_images()
        out += [(Path(f).stem, img) for f, img in zip(samples.filenames, samples.images)]
    except ImportError:
        pass
    try:
        import skimage
        folder = Path(skimage.__file__).parent / "data"
        out += [(Path(n).stem, np.asarray(Image.open(folder / n).convert("RGB"))) for n in SKIMAGE_PHOTOS
                if (folder / n).is_file()]
    except ImportError:
        pass
    return out


def _one(src: np.ndarray, path: Path, megapixels: tuple[float, float], seed: int, quality: int) -> None:
    rng = np.random.default_rng(seed)
    h, w = src.shape[:2]
    area = rng.uniform(0.3, 1.0) * h * w
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))  # w / h
    cw, ch = min(w, int(round(np.sqrt(area * aspect)))), min(h, int(round(np.sqrt(area / aspect))))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    mp = rng.uniform(*megapixels) * 1e6
    k = np.sqrt(mp / (cw * ch))
    img = Image.fromarray(src[y0:y0 + ch, x0:x0 + cw]).resize((max(1, int(cw * k)), max(1, int(ch * k))),
                                                              Image.BILINEAR)
    img.save(path, "JPEG", quality=quality)


def make_photo_folder(root: str | Path, files: int = 1000, classes: int = 4, megapixels=(1.0, 8.0),
                      seed: int = 0, quality: int = 90) -> Path:
    """Write `files` JPEGs spread over `classes` class sub-folders of `root`; returns root."""
    root = Path(root)
    photos = source_photos()
    if len(photos) < classes:
        raise RuntimeError(f"only {len(photos)} bundled photos found; install scikit-image and scikit-learn")
    jobs = []
    for i in range(files):
        name, src = photos[i % classes]
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        jobs.append((src, folder / f"{i:05d}.jpg", megapixels, seed * 1_000_003 + i, quality))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL releases the GIL while encoding
        list(pool.map(lambda j: _one(*j), jobs))
    return root


def runs_over_seeds(files: int, classes: int, seeds, variants, train_once, json_path: Path | None = None) -> list[dict]:
    """Build a folder of `files` JPEGs (1–3 MP) in `classes` classes in a temporary directory and call
    `train_once(folder, seed, variant, run_dir)` for each seed × variant, in that order; print each result as a
    JSON line and, with `json_path`, rewrite every result so far after each run (a long benchmark keeps its rows)."""
    from deeprecipe.utils import write_json
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_photo_folder(Path(tmp) / "photos", files=files, classes=classes, megapixels=(1.0, 3.0), seed=1)
        for seed in seeds:
            for variant in variants:
                runs.append(train_once(folder, seed, variant, Path(tmp) / f"run-{variant}-{seed}"))
                print(json.dumps(runs[-1]), flush=True)
                if json_path:
                    write_json(json_path, {"files": files, "classes": classes, "runs": runs})
    return runs
