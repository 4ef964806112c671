"""Messy image folders: every good image is used, every bad file is named once, nothing crashes."""
import numpy as np
import pytest
from PIL import Image

from deeprecipe.data import load_source
from deeprecipe.errors import DeepRecipeError


@pytest.fixture
def messy_folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "messy"
    good = []

    def save(img: Image.Image, rel: str, **kw):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, **kw)
        good.append(rel)

    rgb = lambda: Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    save(rgb(), "cat/rgb.png")
    save(Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8)), "cat/gray.png")
    save(Image.fromarray(rng.integers(0, 256, (24, 24, 4), dtype=np.uint8), "RGBA"), "cat/rgba.png")
    save(rgb().convert("CMYK"), "cat/cmyk.jpg")
    save(Image.fromarray(rng.integers(0, 65535, (24, 24), dtype=np.uint16)), "dog/sixteen_bit.png")
    save(rgb().convert("P"), "dog/palette.png")
    save(rgb(), "dog/chien_été_犬.png")
    save(Image.fromarray(rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)), "dog/very_large.jpg")
    save(rgb(), "dog/nested/deeper.png")
    bad = {}
    (root / "cat" / "empty.png").write_bytes(b"")
    bad["cat/empty.png"] = "empty"
    data = (root / "cat" / "rgb.png").read_bytes()
    (root / "cat" / "truncated.png").write_bytes(data[: len(data) // 3])
    bad["cat/truncated.png"] = "truncated"
    (root / "dog" / "notes.txt").write_text("not an image")
    bad["dog/notes.txt"] = "text"
    (root / "dog" / ".DS_Store").write_bytes(b"\x00\x01junk")   # hidden: ignored silently
    (root / ".cache").mkdir()                                     # hidden folder: not a class
    (root / "empty_class").mkdir()                                # no images: not a class
    return root, sorted(good), bad


def test_messy_folder_uses_every_good_image_and_names_each_bad_one(messy_folder, capsys):
    root, good, bad = messy_folder
    ds = load_source(str(root))
    used = sorted(str(p.relative_to(root)) for p in map(__import__("pathlib").Path, ds.paths))
    assert used == good                                            # zero lost good images
    assert ds.classes == ["cat", "dog"]
    assert ds.images.shape == (len(good), 3, 24, 24)
    skipped = sorted(str(__import__("pathlib").Path(f).relative_to(root)) for f, _ in ds.skipped)
    assert skipped == sorted(bad)
    err = capsys.readouterr().err
    for rel in bad:
        assert err.count(rel.split("/")[-1]) == 1                  # each bad file named once
    assert "empty_class" in err                                    # the empty class is mentioned


def test_folder_of_only_bad_files_is_a_clear_error(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        (tmp_path / c / "x.png").write_bytes(b"")
    with pytest.raises(DeepRecipeError, match="no readable images"):
        load_source(str(tmp_path))


def test_folder_without_class_folders_is_a_clear_error(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "loose.png")
    with pytest.raises(DeepRecipeError, match="class sub-folders"):
        load_source(str(tmp_path))
