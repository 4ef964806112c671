"""Two transfer targets for a network pretrained on builtin:mnist5k, both 1×28×28 and 10 classes, built offline.

* similar — scikit-learn's 8×8 digits (`builtin:digits`), upsampled to 20×20 and padded to 28×28 the way
  MNIST's digits were framed: the same task and polarity (white ink on black), another scanner, resolution
  and set of writers.
* different — grey 28×28 patches of real photos and textures that scikit-image ships
  (brick, grass, cat, coffee cup, astronaut, …); the class is the photo a patch comes from. Each photo
  is cut into a 4×4 grid of cells, checkerboard-split between test and training, so no test patch shares a
  pixel with a training patch.

Within each class the test images come first (then the training pool), the layout `transfer.target_splits`
expects: the first `test_per_class` images of each class are the fixed test set.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.sources import ImageSet, load_source
from ..errors import DeepRecipeError

SIZE = 28  # the source's input size (mnist5k)
# Ten photos in scikit-image's own data folder (installed with it, never fetched): textures and scenes.
PHOTOS = ["brick", "grass", "gravel", "camera", "coins", "moon", "chelsea", "coffee", "astronaut", "rocket"]


def _test_first(images: torch.Tensor, labels: torch.Tensor, test_per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder so each class's first `test_per_class` images (in a fixed shuffled order) come first."""
    rng = np.random.default_rng(0)
    y = labels.numpy()
    order = [rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)]
    idx = np.concatenate([o[:test_per_class] for o in order] + [o[test_per_class:] for o in order])
    return images[idx], labels[idx]


def similar_digits(test_per_class: int) -> ImageSet:
    """builtin:digits (8×8, 1,797 images) bilinearly upsampled to 20×20 inside a 4-pixel black border."""
    ds = load_source("builtin:digits")
    up = F.interpolate(ds.images.float(), size=(SIZE - 8, SIZE - 8), mode="bilinear", align_corners=False)
    up = F.pad(up, (4, 4, 4, 4))  # MNIST fits each digit in 20×20 and centres it in 28×28
    images, labels = _test_first(up.round().clamp(0, 255).to(torch.uint8), ds.labels, test_per_class)
    return ImageSet(images, labels, list(ds.classes), name="builtin:digits upsampled to 28×28")


def _grey_photo(name: str) -> np.ndarray:
    try:
        import skimage
    except ImportError:
        raise DeepRecipeError("the photo-patch target needs scikit-image's bundled photos",
                              "pip install scikit-image") from None
    folder = Path(skimage.__file__).parent / "data"
    path = next(iter(sorted(folder.glob(f"{name}.*"))), None)
    if path is None:
        raise DeepRecipeError(f"scikit-image's bundled photo {name!r} is missing from {folder}",
                              "reinstall scikit-image (pip install --force-reinstall scikit-image)")
    return np.asarray(Image.open(path).convert("L"))


def _patches(photo: np.ndarray, cells: list[tuple[int, int]], n: int, rng: np.random.Generator) -> np.ndarray:
    """n crops, each inside one of `cells` of a 4×4 grid (side 40–100 % of the cell), resized to 28×28."""
    ch, cw = photo.shape[0] // 4, photo.shape[1] // 4
    out = np.empty((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        r, c = cells[rng.integers(len(cells))]
        side = int(rng.uniform(0.4, 1.0) * min(ch, cw))
        y = r * ch + int(rng.integers(0, ch - side + 1))
        x = c * cw + int(rng.integers(0, cw - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side])
        out[i] = np.asarray(crop.resize((SIZE, SIZE), Image.BILINEAR, reducing_gap=2.0))
    return out


def photo_patches(test_per_class: int, train_per_class: int, seed: int = 0) -> ImageSet:
    """`test_per_class` + `train_per_class` patches of each bundled photo; test patches from the other cells."""
    rng = np.random.default_rng(seed)
    grid = [(r, c) for r in range(4) for c in range(4)]
    test_cells, train_cells = [g for g in grid if sum(g) % 2 == 0], [g for g in grid if sum(g) % 2 == 1]
    photos = [_grey_photo(name) for name in PHOTOS]
    test = [_patches(p, test_cells, test_per_class, rng) for p in photos]
    train = [_patches(p, train_cells, train_per_class, rng) for p in photos]
    x = np.concatenate(test + train)[:, None]
    y = np.concatenate([np.full(test_per_class, c) for c in range(len(photos))]
                       + [np.full(train_per_class, c) for c in range(len(photos))])
    return ImageSet(torch.from_numpy(x), torch.from_numpy(y).long(), list(PHOTOS), name="photo patches 28×28")
