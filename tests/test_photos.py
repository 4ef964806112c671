"""Photo folders: resize policies, the decode-once cache, EXIF orientation and awkward files.

Photos are real ones that installed packages ship (scikit-image / scikit-learn), cropped and scaled.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks.photo_folder import make_photo_folder, source_photos
from deeprecipe.session import load_dataset, prepare_data
from deeprecipe.config import build_config
from deeprecipe.data import decode
from deeprecipe.data.cache import open_photo_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def photos():
    return dict(source_photos())


def _cfg(spec, **data):
    return build_config({"data": {"spec": str(spec), **data}, "model": {"name": "lenet5"},
                         "train": {"epochs": 1, "batch_size": 16}})


def _small_folder(root: Path, photos, per_class=4, size=(300, 200), fmt="JPEG") -> Path:
    for name in ("chelsea", "coffee", "rocket"):
        (root / name).mkdir(parents=True, exist_ok=True)
        src = Image.fromarray(photos[name])
        for i in range(per_class):
            w, h = size if i % 2 == 0 else size[::-1]  # portrait and landscape
            src.crop((i * 7, i * 5, i * 7 + min(src.width - 40, 400), i * 5 + min(src.height - 40, 280))).resize(
                (w, h)).save(root / name / f"{i}.{'jpg' if fmt == 'JPEG' else fmt.lower()}", fmt)
    return root


# ------------------------------------------------------------------------------------------ resize policy
@pytest.mark.parametrize("fmt, size", [("PNG", (331, 250)), ("PNG", (250, 397)), ("JPEG", (1200, 800))])
def test_centre_crop_equals_torchvision_resize_centre_crop(tmp_path, photos, fmt, size):
    from torchvision import transforms
    path = tmp_path / f"img.{fmt.lower()}"
    Image.fromarray(photos["chelsea"]).resize(size).save(path, fmt, quality=95)
    image_size, crop_pct = 64, 0.875
    side = int(image_size / crop_pct)
    ref = transforms.Compose([transforms.Resize(side), transforms.CenterCrop(image_size), transforms.PILToTensor()])
    want = ref(Image.open(path).convert("RGB")).int()
    stored = torch.from_numpy(decode.decode_reduced(path, side, "crop", 3, image_size)).permute(2, 0, 1)
    from deeprecipe.data.resize import centre_view
    got = centre_view(stored[None], image_size)[0].int()
    assert got.shape == want.shape
    diff = (got - want).abs().float()
    if fmt == "PNG":  # the same pixels through the same filter: equal within rounding
        assert diff.max() <= 1
    else:  # JPEG is decoded at 1/8 scale in the DCT domain first: close, not identical
        assert diff.mean() < 4 and diff.max() < 64


def test_auto_policy_squashes_digits_and_crops_photos(tmp_path, photos):
    from deeprecipe.data.resize import resolve_policy
    digits = tmp_path / "digits"
    for c in "ab":
        (digits / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((28, 28), 40 * i, np.uint8)).save(digits / c / f"{i}.png")
    photo_dir = _small_folder(tmp_path / "photos", photos, per_class=2)
    files = lambda d: sorted(Path(d).rglob("*.*"))
    assert resolve_policy(_cfg("builtin:digits").data) == "squash"
    assert resolve_policy(_cfg(digits).data, files(digits)) == "squash"
    assert resolve_policy(_cfg(photo_dir).data, files(photo_dir)) == "crop"
    assert open_photo_folder(_cfg(digits).data) is None  # the old same-size path, unchanged
    assert load_dataset(_cfg("builtin:digits")).shape == (1, 8, 8)


def test_training_batches_are_random_resized_crops(tmp_path, photos):
    folder = _small_folder(tmp_path / "p", photos, per_class=6)
    cfg = _cfg(folder, image_size=32, augment=[], val_fraction=0.0, test_fraction=0.2)
    data = prepare_data(cfg)
    assert data.input_shape == (3, 32, 32) and data.ds.stored.shape[1:] == (3, 36, 36)
    train = data.loader("train", cfg, torch.device("cpu"), train=True)
    (x1, _), = [next(iter(train))]
    assert x1.shape[1:] == (3, 32, 32)
    train.set_epoch(1)
    x2, _ = next(iter(train))
    assert not torch.allclose(x1, x2)  # another epoch, other crops
    train.set_epoch(0)
    assert torch.equal(next(iter(train))[0], x1)  # same epoch, same crops (resumable)
    ev, _ = next(iter(data.loader("test", cfg, torch.device("cpu"))))
    evals = data.part("test")[0].float().div(255)
    mean, std = torch.tensor(data.mean).view(1, 3, 1, 1), torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(ev, (evals - mean) / std, atol=1e-5)  # evaluation: the centre crops


# ------------------------------------------------------------------------------------------ cache
def test_second_run_decodes_no_file_and_a_changed_file_is_decoded_again(tmp_path, photos):
    folder = _small_folder(tmp_path / "p", photos, per_class=3)
    cfg = _cfg(folder, image_size=32, cache_dir=str(tmp_path / "cache"))
    before = decode.DECODE_COUNT["files"]
    first = load_dataset(cfg)
    assert decode.DECODE_COUNT["files"] - before == 9
    before = decode.DECODE_COUNT["files"]
    second = load_dataset(cfg)
    assert decode.DECODE_COUNT["files"] == before  # nothing decoded: all from the cache
    assert torch.equal(first.stored, second.stored) and torch.equal(first.labels, second.labels)
    changed = folder / "coffee" / "1.jpg"
    Image.fromarray(photos["rocket"]).resize((300, 200)).save(changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    third = load_dataset(cfg)
    assert decode.DECODE_COUNT["files"] - before == 1
    row = third.paths.index(str(changed))
    assert not torch.equal(third.stored[row], first.stored[row])
    others = [i for i in range(len(third)) if i != row]
    assert torch.equal(third.stored[others], first.stored[others])


def test_cache_over_memory_limit_is_memory_mapped(tmp_path, photos, capsys):
    folder = _small_folder(tmp_path / "p", photos, per_class=3)
    ds = load_dataset(_cfg(folder, image_size=32, memory_limit_mb=0.001))
    assert "memory-mapping" in capsys.readouterr().err
    assert ds.images.shape == (9, 3, 32, 32)


def _exif_rotated_jpeg(path: Path, upright: np.ndarray) -> None:
    """Store the photo sideways with EXIF orientation 6 (rotate 90° clockwise to view), as phones do."""
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # counter-clockwise on disk
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, "JPEG", quality=95, exif=exif.tobytes())


def test_exif_rotated_photo_arrives_upright(tmp_path, photos):
    upright = np.asarray(Image.fromarray(photos["chelsea"]).resize((400, 300)))  # landscape
    path = tmp_path / "rotated.jpg"
    _exif_rotated_jpeg(path, upright)
    assert Image.open(path).size == (300, 400)  # portrait on disk
    got = decode.decode_reduced(path, 100, "pad", 3).astype(float)
    want = np.asarray(Image.fromarray(upright).resize((100, 75), Image.BILINEAR)).astype(float)
    assert np.abs(got[12:87] - want).mean() < 8  # letterboxed landscape: the photo the right way up
    assert got[:10].max() == 0  # black bands above and below, not at the sides


# ------------------------------------------------------------------------------------------ awkward files
def test_awkward_photo_files_train_or_are_skipped_by_name(tmp_path, photos, capsys):
    from deeprecipe.api import train
    folder = _small_folder(tmp_path / "p", photos, per_class=4)
    cat = Image.fromarray(photos["chelsea"]).resize((320, 240))
    cat.convert("CMYK").save(folder / "chelsea" / "cmyk.jpg", "JPEG")
    cat.save(folder / "chelsea" / "progressive.jpg", "JPEG", progressive=True)
    _exif_rotated_jpeg(folder / "chelsea" / "rotated.jpg", np.asarray(cat))
    Image.fromarray(photos["coffee"]).resize((320, 240)).save(folder / "coffee" / "photo.webp", "WEBP")
    gray16 = (np.asarray(Image.fromarray(photos["rocket"]).convert("L").resize((320, 240))).astype(np.uint16) * 257)
    Image.fromarray(gray16).save(folder / "rocket" / "deep.png")
    buf = io.BytesIO()
    cat.save(buf, "JPEG")
    (folder / "rocket" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    (folder / "rocket" / "notes.txt").write_text("not an image")
    summary = train(_cfg(folder, image_size=32), out=tmp_path / "run", show_progress=True)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    skipped_line = [line for line in out.splitlines() if "skipped" in line]
    assert len(skipped_line) == 1 and "truncated.jpg" in skipped_line[0] and "notes.txt" in skipped_line[0]
    ds = load_dataset(_cfg(folder, image_size=32))
    names = {Path(p).name for p in ds.paths}
    assert {"cmyk.jpg", "progressive.jpg", "rotated.jpg", "photo.webp", "deep.png"} <= names
    assert not {"truncated.jpg", "notes.txt"} & names
    deep = ds.images[ds.paths.index(str(folder / "rocket" / "deep.png"))]
    assert deep.float().mean() > 20 and torch.equal(deep[0], deep[1])  # 16-bit gray scaled, not black
    cmyk = ds.images[ds.paths.index(str(folder / "chelsea" / "cmyk.jpg"))].float()
    plain = ds.images[ds.paths.index(str(folder / "chelsea" / "progressive.jpg"))].float()
    assert (cmyk - plain).abs().mean() < 12  # CMYK converted to the same colours
    assert sum(summary["sizes"].values()) == len(ds) == 12 + 5


# ------------------------------------------------------------------------------------------ bounded memory
RSS_SCRIPT = """
import resource, sys
from deeprecipe.api import train
train({"data": {"spec": sys.argv[1], "image_size": 32, "memory_limit_mb": 0.5},
       "model": {"name": "lenet5"}, "train": {"epochs": 1, "batch_size": 32}}, out=sys.argv[2], show_progress=False)
print("PEAK_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


@pytest.mark.slow
def test_folder_of_large_jpegs_trains_in_bounded_memory(tmp_path):
    """240 JPEGs of 3–5 megapixels (≈2.9 GB as full bitmaps) train under 900 MB peak RSS, the cache
    memory-mapped (memory_limit_mb below its size): decoding them whole, as before, held every full bitmap."""
    folder = make_photo_folder(tmp_path / "big", files=240, classes=3, megapixels=(3.0, 5.0))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(folder), str(tmp_path / "run")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = float(proc.stdout.split("PEAK_MB")[1])
    assert peak < 900, f"peak RSS {peak:.0f} MB"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sum(summary["sizes"].values()) == 240


# ------------------------------------------------------------------------------------------ pretrained statistics
def test_pretrained_weights_bring_their_normalisation_and_it_is_recorded(tmp_path, photos):
    from deeprecipe.api import train
    from deeprecipe.models import create_model
    from deeprecipe.train.transfer import IMAGENET_MEAN, IMAGENET_STD
    from deeprecipe.train.checkpoint import load_checkpoint
    folder = _small_folder(tmp_path / "p", photos, per_class=4)
    base = {"data": {"spec": str(folder), "image_size": 32}, "model": {"name": "lenet5"},
            "train": {"epochs": 1, "batch_size": 16}}
    own = train(base, out=tmp_path / "own", show_progress=False)
    assert own["normalization"]["source"] == "training split"
    # predict sees a file as evaluation did: the centre crop, not the photo squashed
    from deeprecipe.api import predict
    from deeprecipe.loaded import load_run
    from deeprecipe.data.cache import decode_for_run
    loaded = load_run(tmp_path / "own")
    assert loaded.cfg.data.resize == "crop" and loaded.cfg.data.image_size == 32
    ds = load_dataset(loaded.cfg)
    f = ds.paths[5]
    assert torch.equal(decode_for_run(f, loaded.cfg.data, 3), ds.images[5])
    (row,) = predict(tmp_path / "own", [f])
    assert row["label"] in ds.classes
    assert not np.allclose(own["normalization"]["mean"], IMAGENET_MEAN, atol=1e-3)

    torch.save(create_model("lenet5", num_classes=1000, in_chans=3, input_size=32).state_dict(), tmp_path / "tv.pth")
    tv = train({**base, "model": {"name": "lenet5", "pretrained": str(tmp_path / "tv.pth")}}, out=tmp_path / "tv",
               show_progress=False)
    assert tv["normalization"]["mean"] == IMAGENET_MEAN and tv["normalization"]["std"] == IMAGENET_STD
    ckpt = load_checkpoint(tmp_path / "tv" / "checkpoints" / "best.pt")
    assert list(ckpt["mean"]) == IMAGENET_MEAN and ckpt["stats_source"].startswith("ImageNet")
    assert "ImageNet" in (tmp_path / "tv" / "report.html").read_text()

    other = _small_folder(tmp_path / "q", photos, per_class=4, size=(200, 260))
    child = train({**base, "data": {"spec": str(other), "image_size": 32},
                   "model": {"name": "lenet5", "pretrained": str(tmp_path / "own")}}, out=tmp_path / "child",
                  show_progress=False)
    assert child["normalization"]["mean"] == own["normalization"]["mean"]  # the parent run's, not this folder's
    assert child["normalization"]["source"].startswith("pretrained run")
