"""Foundation data layer: built-in sets, npz, image folders, splits, stats, TensorLoader."""
import numpy as np
import pytest
import torch
from PIL import Image

from deeprecipe.augment import build_pipeline
from deeprecipe.data import TensorLoader, channel_stats, load_source, split_indices
from deeprecipe.data.split import resolve_splits
from deeprecipe.errors import DeepRecipeError


def test_builtin_mnist5k_is_the_shipped_subset():
    ds = load_source("builtin:mnist5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    assert ds.classes == [str(i) for i in range(10)]


def test_builtin_digits_scaled_to_uint8():
    ds = load_source("builtin:digits")
    assert ds.images.shape[1:] == (1, 8, 8)
    assert int(ds.images.max()) == 255


def test_npz_round_trip(tmp_path, mnist_arrays):
    x, y = mnist_arrays
    p = tmp_path / "d.npz"
    idx = np.concatenate([np.flatnonzero(y == c)[:5] for c in range(10)])
    np.savez(p, x=x[idx], y=y[idx])
    ds = load_source(f"npz:{p}")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x[idx]))
    assert torch.equal(ds.labels, torch.from_numpy(y[idx]))


def test_npz_errors_name_the_problem(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 0]))
    with pytest.raises(DeepRecipeError, match="one label per image"):
        load_source(f"npz:{p}")
    with pytest.raises(DeepRecipeError, match="does not exist"):
        load_source(f"npz:{tmp_path / 'nope.npz'}")
    with pytest.raises(DeepRecipeError, match="unknown data spec prefix"):
        load_source("imagenet:/x")


@pytest.mark.parametrize("kind", ["npz", "csv"])
def test_a_file_spec_given_a_folder_says_so_and_shows_the_folder_spec(tmp_path, kind):
    with pytest.raises(DeepRecipeError) as err:
        load_source(f"{kind}:{tmp_path}")
    text = str(err.value)
    assert "is a folder" in text and "does not exist" not in text
    assert f"--data {tmp_path}" in text  # the plain-path spec that reads a folder of class sub-folders


def _write_folder(root, x, y, classes=("a", "b", "c")):
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / classes[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i}.png")


def test_folder_reader_reads_classes_and_skips_unreadable(tmp_path, mnist_arrays, capsys):
    x, y = mnist_arrays
    keep = np.concatenate([np.flatnonzero(y == c)[:10] for c in range(3)])
    _write_folder(tmp_path, x[keep], y[keep])
    (tmp_path / "a" / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "b" / ".hidden.png").write_bytes(b"junk")
    ds = load_source(str(tmp_path))
    assert ds.classes == ["a", "b", "c"]
    assert len(ds) == 30
    assert [s for s, _ in ds.skipped] == [str(tmp_path / "a" / "broken.png")]
    assert "broken.png" in capsys.readouterr().err
    # Pixels survive the PNG round trip exactly.
    order = np.argsort([int(p.rsplit("/", 1)[1].split(".")[0]) for p in ds.paths])
    assert torch.equal(ds.images[order][:, 0], torch.from_numpy(x[np.sort(keep)]))
    assert torch.equal(ds.labels[order], torch.from_numpy(y[np.sort(keep)]))


def test_folder_mixed_sizes_and_modes_are_unified(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(tmp_path / c / "rgb.png")
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(tmp_path / c / "gray.png")
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / c / "big.jpg")
    ds = load_source(str(tmp_path))
    assert ds.images.shape == (6, 3, 16, 16)
    err = capsys.readouterr().err
    assert "resized 2" in err and "converted 2" in err


def test_folder_with_given_split_is_respected(tmp_path, mnist_arrays):
    x, y = mnist_arrays
    for part, sl in (("train", slice(0, 40)), ("val", slice(40, 50)), ("test", slice(50, 60))):
        idx = np.concatenate([np.flatnonzero(y == c)[sl][: (sl.stop - sl.start) // 2] for c in range(2)])
        _write_folder(tmp_path / part, x[idx], y[idx], classes=("zero", "one"))
    ds = load_source(str(tmp_path))
    assert {k: len(v) for k, v in ds.splits.items()} == {"train": 40, "val": 10, "test": 10}
    splits = resolve_splits(ds.splits, ds.labels.numpy(), 0.1, 0.2, 0)
    assert all("/train/" in ds.paths[i] for i in splits["train"])
    assert all("/test/" in ds.paths[i] for i in splits["test"])


def test_empty_or_single_class_folder_is_an_error(tmp_path):
    (tmp_path / "only").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "only" / "a.png")
    with pytest.raises(DeepRecipeError, match="one class"):
        load_source(str(tmp_path))
    with pytest.raises(DeepRecipeError, match="does not exist"):
        load_source(str(tmp_path / "missing"))


def test_split_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(10), 100)
    a = split_indices(labels, 0.1, 0.2, seed=3)
    b = split_indices(labels, 0.1, 0.2, seed=3)
    c = split_indices(labels, 0.1, 0.2, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])
    assert {k: len(v) for k, v in a.items()} == {"train": 700, "val": 100, "test": 200}
    assert len(set(a["train"]) | set(a["val"]) | set(a["test"])) == 1000
    for part in a.values():
        counts = np.bincount(labels[part], minlength=10)
        assert counts.max() - counts.min() <= 1  # every class equally represented


def test_stats_come_from_train_only():
    images = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
    images[5:] = 255
    mean, std = channel_stats(images[:5])
    assert mean == [0.0]
    mean_all, std_all = channel_stats(images)
    assert abs(mean_all[0] - 0.5) < 1e-9 and abs(std_all[0] - 0.5) < 1e-9


def test_tensor_loader_order_is_seeded_per_epoch_and_augment_is_per_sample():
    images = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    images[:, :, 3:5, 3:5] = 255  # a bright square in the middle
    labels = torch.arange(64) % 4
    loader = TensorLoader(images, labels, 64, [0.0], [1.0], shuffle=True,
                          augment=build_pipeline(["translate:3"], 4), seed=7)
    loader.set_epoch(0)
    x0, y0 = next(iter(loader))
    x0b, y0b = next(iter(loader))
    loader.set_epoch(1)
    x1, y1 = next(iter(loader))
    assert torch.equal(y0, y0b) and torch.equal(x0, x0b)       # same epoch → same order and augmentation
    assert not torch.equal(y0, y1)                              # next epoch → new order
    centres = {tuple((x0[i, 0] > 0.5).nonzero()[0].tolist()) for i in range(64)}
    assert len(centres) > 10                                   # each image shifted by its own amount
    assert x0.min() >= 0 and x0.max() <= 1
    assert sorted(y0.tolist()) == sorted(labels.tolist())      # labels travel with their images
