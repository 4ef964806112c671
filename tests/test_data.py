"""Readers, streaming, protocols (k-fold / repeated splits), leak checks and `data inspect`."""
from __future__ import annotations

import gzip
import json
import pickle
import re

import numpy as np
import pytest
import yaml
import torch
from torchvision.io import write_png

from deeprecipe.cli import main
from deeprecipe.config import build_config
from deeprecipe.data.leakage import leak_report
from deeprecipe.data.protocols import protocol_splits
from deeprecipe.data.sources import load_source
from deeprecipe.errors import DeepRecipeError

TINY_MODEL = ["model.widths=[4,8]", "model.convs=1", "train.batch_size=32", "train.precision=fp32"]


def _slice(mnist_arrays, per_class: int, offset: int = 0):
    x, y = mnist_arrays
    idx = np.concatenate([np.flatnonzero(y == c)[offset:offset + per_class] for c in range(10)])
    return x[idx], y[idx]


def _rgb(x):
    """Gray digits (N, H, W) → distinct RGB images (N, H, W, 3)."""
    return np.stack([x, x[:, ::-1], np.full_like(x, 40)], -1)


def _write_folder(root, x, y, classes=None):
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / (classes[label] if classes else f"c{label}")
        d.mkdir(parents=True, exist_ok=True)
        write_png(torch.from_numpy(np.ascontiguousarray(img))[None], str(d / f"{i:04d}.png"))


# ------------------------------------------------------------------------------------------ CIFAR
def _write_cifar10(root, x, y, names):
    """The python release layout: 5 train batches, test_batch, batches.meta (keys as bytes, like py2 pickles)."""
    root.mkdir()
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    chunks = np.array_split(np.arange(len(x) - 10), 5)
    for i, part in enumerate(chunks, 1):
        with open(root / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": rows[part], b"labels": y[part].tolist(), b"batch_label": b"x"}, f)
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"data": rows[-10:], b"labels": y[-10:].tolist()}, f)
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": rows.shape[1]}, f)


def test_cifar10_round_trip_and_class_names(tmp_path, mnist_arrays):
    x, y = _slice(mnist_arrays, 4)
    x = _rgb(x)[:, :16, :16]
    names = [f"name{i}" for i in range(10)]
    _write_cifar10(tmp_path / "cifar-10-batches-py", x, y, names)
    ds = load_source(f"cifar10:{tmp_path}")  # the archive's inner folder is found
    assert ds.classes == names
    assert ds.images.shape == (40, 3, 16, 16)
    assert torch.equal(ds.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert ds.labels.tolist() == y.tolist()
    assert ds.splits["train"].tolist() == list(range(30)) and ds.splits["test"].tolist() == list(range(30, 40))


def test_cifar100_round_trip(tmp_path, mnist_arrays):
    x, y = _slice(mnist_arrays, 3)
    x = _rgb(x)[:, :8, :8]
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), -1)
    for name, part in (("train", slice(0, 20)), ("test", slice(20, None))):
        with open(tmp_path / name, "wb") as f:
            pickle.dump({"data": rows[part], "fine_labels": y[part].tolist(), "coarse_labels": [0] * len(y[part])}, f)
    with open(tmp_path / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(10)], "coarse_label_names": ["all"]}, f)
    ds = load_source(f"cifar100:{tmp_path}")
    assert ds.classes[3] == "f3" and len(ds) == 30 and len(ds.splits["test"]) == 10
    assert torch.equal(ds.images[25], torch.from_numpy(x[25]).permute(2, 0, 1))


class _Sneaky:
    def __reduce__(self):
        import os
        return (os.getenv, ("HOME",))


def test_cifar_pickle_with_foreign_globals_is_refused(tmp_path, mnist_arrays):
    x, y = _slice(mnist_arrays, 4)
    _write_cifar10(tmp_path / "c", _rgb(x)[:, :8, :8], y, [str(i) for i in range(10)])
    with open(tmp_path / "c" / "test_batch", "wb") as f:
        pickle.dump({"data": _Sneaky(), "labels": [0]}, f)
    with pytest.raises(DeepRecipeError, match="refusing to load global"):
        load_source(f"cifar10:{tmp_path / 'c'}")


def test_cifar_missing_files_named(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"")
    with pytest.raises(DeepRecipeError, match="data_batch_2"):
        load_source(f"cifar10:{tmp_path}")


# ------------------------------------------------------------------------------------------ MNIST IDX
def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_round_trip(tmp_path, mnist_arrays, gz):
    x, y = _slice(mnist_arrays, 5)
    files = {"train-images-idx3-ubyte": x[:40], "train-labels-idx1-ubyte": y[:40],
             "t10k-images-idx3-ubyte": x[40:], "t10k-labels-idx1-ubyte": y[40:]}
    for name, arr in files.items():
        data = _idx_bytes(arr)
        (tmp_path / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    ds = load_source(f"mnist:{tmp_path}")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x)) and ds.labels.tolist() == y.tolist()
    assert len(ds.splits["train"]) == 40 and ds.splits["test"].tolist() == list(range(40, 50))


def test_mnist_bad_files(tmp_path, mnist_arrays):
    with pytest.raises(DeepRecipeError, match="t10k-images"):
        (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(mnist_arrays[0][:2]))
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(mnist_arrays[1][:2]))
        load_source(f"mnist:{tmp_path}")
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / name).write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(DeepRecipeError, match="bad magic"):
        load_source(f"mnist:{tmp_path}")


# ------------------------------------------------------------------------------------------ CSV
def test_csv_round_trip_relative_paths_and_escape(tmp_path, mnist_arrays):
    x, y = _slice(mnist_arrays, 3)
    root = tmp_path / "set"
    (root / "img").mkdir(parents=True)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    lines = ["path,label"]
    for i, (img, label) in enumerate(zip(x, y)):
        write_png(torch.from_numpy(img)[None], str(root / "img" / f"{i}.png"))
        lines.append(f"img/{i}.png,{names[label]}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    ds = load_source(f"csv:{root / 'labels.csv'}")
    assert ds.classes == sorted(names)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(x))
    assert [ds.classes[i] for i in ds.labels.tolist()] == [names[v] for v in y]

    write_png(torch.from_numpy(x[0])[None], str(tmp_path / "outside.png"))
    (root / "bad.csv").write_text("img/0.png,zero\n../outside.png,one\n")
    with pytest.raises(DeepRecipeError, match="points outside") as err:
        load_source(f"csv:{root / 'bad.csv'}")
    assert err.value.fix is not None and "allow_outside" in err.value.fix  # the fix, not only the message
    assert len(load_source(f"csv:{root / 'bad.csv'}?allow_outside")) == 2
    assert main(["data", "inspect", f"csv:{root / 'bad.csv'}"]) == 2


# ------------------------------------------------------------------------------------------ streaming
def test_stream_loader_matches_memory_loader(tmp_path, mnist_arrays):
    from deeprecipe.session import prepare_data
    from deeprecipe.data.stream import StreamLoader
    x, y = _slice(mnist_arrays, 6)
    _write_folder(tmp_path / "f", x, y)
    batches = {}
    for mode in ("memory", "stream"):
        cfg = build_config({"data": {"spec": str(tmp_path / "f"), "loader": mode, "augment": ["translate:2", "cutout:4"]},
                            "train": {"batch_size": 8, "seed": 3}})
        data = prepare_data(cfg)
        loader = data.loader("train", cfg, torch.device("cpu"), train=True)
        assert isinstance(loader, StreamLoader) == (mode == "stream")
        loader.set_epoch(2)
        batches[mode] = list(loader)
        assert len(batches[mode]) == len(loader)
        loader.set_epoch(3)
        assert not torch.equal(next(iter(loader))[0], batches[mode][0][0])  # a new epoch, a new order
    for (xm, ym), (xs, ys) in zip(batches["memory"], batches["stream"]):
        assert torch.equal(ym, ys) and torch.allclose(xm, xs)


def test_auto_loader_streams_when_too_big(tmp_path, mnist_arrays):
    from deeprecipe.session import load_dataset
    x, y = _slice(mnist_arrays, 2)
    _write_folder(tmp_path / "f", x, y)
    small = build_config({"data": {"spec": str(tmp_path / "f"), "memory_limit_mb": 0.001}})
    streamed = load_dataset(small).images
    assert not isinstance(streamed, torch.Tensor)
    big = build_config({"data": {"spec": str(tmp_path / "f")}})
    in_memory = load_dataset(big).images
    assert isinstance(in_memory, torch.Tensor) and torch.equal(streamed.decode_all(), in_memory)
    with pytest.raises(DeepRecipeError, match="needs an image folder"):
        load_dataset(build_config({"data": {"spec": "builtin:digits", "loader": "stream"}}))


# ------------------------------------------------------------------------------------------ protocols
def test_kfold_splits_partition_and_stratify(mnist_arrays):
    _, y = _slice(mnist_arrays, 20)
    splits = list(protocol_splits(y, 5, 0, 0.1, 0.2, seed=0))
    assert len(splits) == 5
    tests = np.concatenate([s["test"] for s in splits])
    assert sorted(tests.tolist()) == list(range(len(y)))  # every image tested exactly once
    for s in splits:
        assert not set(s["train"]) & set(s["test"]) and not set(s["val"]) & set(s["test"])
        assert not set(s["train"]) & set(s["val"])
        assert np.bincount(y[s["test"]], minlength=10).tolist() == [4] * 10
    repeats = list(protocol_splits(y, 0, 3, 0.1, 0.2, seed=0))
    assert len(repeats) == 3 and not np.array_equal(repeats[0]["test"], repeats[1]["test"])
    with pytest.raises(DeepRecipeError, match="smallest class"):
        list(protocol_splits(y, 50, 0, 0.1, 0.2))


def _protocol_line(text: str) -> dict[str, tuple[float, float]]:
    line = [ln for ln in text.splitlines() if "± " in ln][-1]
    return {k: (float(m), float(s)) for k, m, s in re.findall(r"(\w+) ([\d.]+) ± ([\d.]+)", line)}


def test_five_fold_cv_reports_mean_std(tmp_path, mnist_arrays, capsys):
    x, y = _slice(mnist_arrays, 15)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    code = main(["train", "--data", f"npz:{tmp_path / 'd.npz'}", "--epochs", "1", "--out", str(tmp_path / "run"),
                 "--set", "data.folds=5", *[a for o in TINY_MODEL if "batch_size" not in o for a in ("--set", o)]])
    assert code == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["protocol"] == "5-fold CV" and [r["run"] for r in summary["runs"]] == [f"fold{i}" for i in range(1, 6)]
    for i in range(1, 6):
        sub = json.loads((tmp_path / "run" / f"fold{i}" / "summary.json").read_text())
        assert sub["test_acc"] == summary["metrics"]["test_acc"]["values"][i - 1]
        assert sub["sizes"]["test"] == 30
        fold_cfg = yaml.safe_load((tmp_path / "run" / f"fold{i}" / "config.yaml").read_text())
        assert fold_cfg["train"]["batch_size"] == 16  # the default resolved for the fold's ~100 training images
    acc = summary["metrics"]["test_acc"]["values"]
    assert summary["metrics"]["test_acc"]["mean"] == pytest.approx(np.mean(acc))
    assert summary["metrics"]["test_acc"]["std"] == pytest.approx(np.std(acc, ddof=1))
    printed = _protocol_line(capsys.readouterr().err)
    for key, (mean, std) in printed.items():
        assert mean == pytest.approx(summary["metrics"][key]["mean"], abs=5e-5)
        assert std == pytest.approx(summary["metrics"][key]["std"], abs=5e-5)
    assert "test_acc" in printed


@pytest.mark.slow
def test_five_fold_cv_full_mnist5k(tmp_path, capsys):
    from deeprecipe.api import train
    summary = train({"data": {"spec": "builtin:mnist5k", "folds": 5}}, out=tmp_path / "cv",
                    overrides=["train.epochs=3", "model.name=lenet5"])
    # a real classifier on every fold (LeNet-5, 3 epochs); chance is 0.1
    assert summary["metrics"]["test_acc"]["mean"] > 0.85
    assert summary["metrics"]["test_acc"]["std"] < 0.05
    printed = _protocol_line(capsys.readouterr().err)
    assert printed["test_acc"][0] == pytest.approx(summary["metrics"]["test_acc"]["mean"], abs=5e-5)


# ------------------------------------------------------------------------------------------ leaks, inspect
def test_leak_report_finds_shared_images(mnist_arrays):
    x, _ = _slice(mnist_arrays, 3)
    images = torch.from_numpy(x)[:, None].clone()
    images[25] = images[2]          # image 2 (train) also in test
    images[26] = images[27]         # a duplicate inside test only
    report = leak_report(images, {"train": np.arange(20), "test": np.arange(20, 30)})
    assert report["cross_split"] == {"test/train": 1}
    assert report["duplicate_groups"] == 2 and report["examples"][0] == {"test": [25], "train": [2]}
    assert leak_report(images[:20], {"train": np.arange(20)})["cross_split"] == {}


def test_prepare_data_warns_about_leaks(tmp_path, mnist_arrays, capsys):
    from deeprecipe.session import prepare_data
    x, y = _slice(mnist_arrays, 10)
    x = np.concatenate([x, x[:20]])
    y = np.concatenate([y, y[:20]])
    np.savez(tmp_path / "dup.npz", x=x, y=y)
    prepare_data(build_config({"data": {"spec": f"npz:{tmp_path / 'dup.npz'}"}}))
    assert "identical images appear in more than one split" in capsys.readouterr().err


def test_data_inspect_folder(tmp_path, mnist_arrays, capsys):
    x, y = _slice(mnist_arrays, 4)
    keep = y != 9
    x, y = np.concatenate([x[keep], x[y == 9][:1]]), np.concatenate([y[keep], [9]])
    _write_folder(tmp_path / "f", x, y)
    assert main(["data", "inspect", str(tmp_path / "f"), "--json", "--out", str(tmp_path / "o")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class_counts"]["c9"] == 1 and info["imbalance"] == 4.0
    assert info["files"] == {"sizes": {"28x28": 37}, "modes": {"L": 37}}
    from PIL import Image
    with Image.open(tmp_path / "o" / "samples.png") as im:
        assert im.size[0] > 10 * 56
    assert main(["data", "inspect", str(tmp_path / "f")]) == 0
    assert "imbalance (largest/smallest class): 4.00" in capsys.readouterr().out


def test_more_folds_than_images_per_class_is_a_clear_error(mnist_npz, tmp_path):
    from deeprecipe.api import train
    from deeprecipe.errors import DeepRecipeError
    with pytest.raises(DeepRecipeError, match="data.folds=5"):
        train({"data": {"spec": mnist_npz(3), "folds": 5}}, out=tmp_path / "cv", show_progress=False)
