"""Bad arrays in npz: each problem is one clear error naming the file and what to fix."""
import numpy as np
import pytest

from deeprecipe.data import load_source
from deeprecipe.errors import DeepRecipeError

GOOD_X = np.random.default_rng(0).integers(0, 256, (20, 8, 8), dtype=np.uint8)
GOOD_Y = np.arange(20) % 2


@pytest.mark.parametrize("arrays, needle", [
    ({"x": np.full((20, 8, 8), np.nan), "y": GOOD_Y}, "NaN or inf"),
    ({"x": np.full((20, 8, 8), np.inf), "y": GOOD_Y}, "NaN or inf"),
    ({"x": GOOD_X.astype(np.float64) * 10, "y": GOOD_Y}, "values span"),
    ({"x": GOOD_X, "y": GOOD_Y[:5]}, "one label per image"),
    ({"x": GOOD_X, "y": GOOD_Y - 1}, "negative"),
    ({"x": GOOD_X, "y": GOOD_Y, "classes": np.array(["a"])}, "out of range"),
    ({"x": GOOD_X[:, 0], "y": GOOD_Y}, "shape"),
    ({"x": GOOD_X, "y": GOOD_Y + 0.5}, "labels y have dtype"),
    ({"x": GOOD_X}, "lacks array"),
    ({"x": GOOD_X, "y": np.zeros(20, int)}, "only one class"),
])
def test_bad_npz_arrays(tmp_path, arrays, needle):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DeepRecipeError) as err:
        load_source(f"npz:{path}")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_object_arrays_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([object()] * 3, dtype=object), y=np.arange(3))
    with pytest.raises(DeepRecipeError, match="object arrays|not a readable"):
        load_source(f"npz:{path}")


def test_not_a_zip_file(tmp_path):
    path = tmp_path / "junk.npz"
    path.write_bytes(b"hello")
    with pytest.raises(DeepRecipeError, match="not a readable .npz"):
        load_source(f"npz:{path}")


def test_float_images_in_unit_range_and_string_labels_are_accepted(tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, x=GOOD_X / 255.0, y=np.array(["cat", "dog"] * 10))
    ds = load_source(f"npz:{path}")
    assert ds.classes == ["cat", "dog"]
    assert np.array_equal(ds.images[:, 0].numpy(), GOOD_X)


def test_csv_with_a_missing_path_uses_the_rest_and_names_it(tmp_path, capsys):
    from PIL import Image
    for i in range(4):
        Image.fromarray(np.full((8, 8), i * 60, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "d.csv").write_text("path,label\n0.png,a\n1.png,b\n2.png,a\nmissing.png,b\n3.png,b\n")
    ds = load_source(f"csv:{tmp_path / 'd.csv'}")
    assert len(ds) == 4 and ds.classes == ["a", "b"]
    assert "missing.png" in capsys.readouterr().err


def test_unreadable_cifar_batch_is_named(tmp_path):
    import pickle
    folder = tmp_path / "cifar"
    folder.mkdir()
    for name in ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch",
                 "batches.meta"]:
        (folder / name).write_bytes(pickle.dumps({"data": 1})[:10])  # truncated pickles
    with pytest.raises(DeepRecipeError, match="is not a readable CIFAR pickle"):
        load_source(f"cifar10:{folder}")
