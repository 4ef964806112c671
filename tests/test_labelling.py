"""Labelling help: label audit, feature projection, pseudo-labels, Grad-CAM — on real MNIST digits."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from deeprecipe import api
from deeprecipe.errors import DeepRecipeError

MLP = ["model.name=mlp", "model.depth=1", "model.width=128", "data.augment=[]", "train.batch_size=64",
       "optim.lr=0.003", "schedule.name=constant"]


def _subset(x, y, per_class, skip=0):
    return np.concatenate([np.flatnonzero(y == c)[skip:skip + per_class] for c in range(10)])


def _flip(y, fraction, seed):
    """Give `fraction` of the images a random wrong label; returns (noisy labels, flipped indices)."""
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(y), int(round(fraction * len(y))), replace=False)
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, 10, len(flipped))) % 10
    return noisy, flipped


def _audit_recall(tmp_path, mnist_arrays, per_class, folds, epochs):
    from deeprecipe.labelling.audit import audit
    x, y = mnist_arrays
    idx = _subset(x, y, per_class)
    noisy, flipped = _flip(y[idx], 0.05, seed=1)
    path = tmp_path / "noisy.npz"
    np.savez(path, x=x[idx], y=noisy)
    api.train(None, out=tmp_path / "run", overrides=[f"data.spec=npz:{path}", "train.epochs=1", *MLP], show_progress=False)
    result, ds = audit(tmp_path / "run", f"npz:{path}", folds=folds, epochs=epochs, show_progress=False)
    caught = np.intersect1d(result.top(0.05), flipped)
    return len(caught) / len(flipped), result, ds, path, x[idx], y[idx], flipped


def test_audit_top_suspects_hold_most_flipped_labels(tmp_path, mnist_arrays):
    """Fast variant on 1,000 digits: a weaker bound (≥ 55%) than the full-set test below; chance is 5%."""
    recall, result, ds, *_ = _audit_recall(tmp_path, mnist_arrays, per_class=100, folds=3, epochs=3)
    print(f"fast audit: top 5% holds {recall:.0%} of the flipped labels")
    assert recall >= 0.55, recall
    assert sorted(result.order.tolist()) == list(range(len(ds)))
    assert np.all(np.diff(result.p_given[result.order]) >= 0)


@pytest.mark.slow
def test_audit_on_mnist5k_catches_70_percent_of_flipped_labels(tmp_path, mnist_arrays):
    recall, *_ = _audit_recall(tmp_path, mnist_arrays, per_class=500, folds=4, epochs=4)
    assert recall >= 0.70, recall


def test_audit_cli_writes_csv_html_and_relabel_fixes_labels(tmp_path, mnist_arrays):
    from deeprecipe.cli import main
    from deeprecipe.data.sources import load_source
    x, y = mnist_arrays
    idx = _subset(x, y, 30)
    noisy, flipped = _flip(y[idx], 0.1, seed=2)
    path = tmp_path / "noisy.npz"
    np.savez(path, x=x[idx], y=noisy)
    api.train(None, out=tmp_path / "run", overrides=[f"data.spec=npz:{path}", "train.epochs=1", *MLP], show_progress=False)
    assert main(["audit", str(tmp_path / "run"), "--data", f"npz:{path}", "--folds", "2", "--epochs", "1",
                 "--top", "20", "--out", str(tmp_path / "audit")]) == 0
    rows = (tmp_path / "audit" / "audit.csv").read_text().splitlines()
    assert rows[0] == "rank,index,path,given,predicted,p_given,p_predicted"
    assert len(rows) == 1 + len(idx)
    page = (tmp_path / "audit" / "audit.html").read_text()
    assert page.count("<img src='data:image/png;base64,") == 20 and "http" not in page

    fixes = tmp_path / "fixes.csv"
    fixes.write_text("index,label\n" + "".join(f"{i},{y[idx][i]}\n" for i in flipped))
    assert main(["audit", str(tmp_path / "run"), "--data", f"npz:{path}", "--relabel", str(fixes),
                 "--out", str(tmp_path / "fixed")]) == 0
    fixed = load_source(f"npz:{tmp_path / 'fixed' / 'relabelled.npz'}")
    assert np.array_equal(fixed.labels.numpy(), y[idx])
    assert torch.equal(fixed.images[:, 0], torch.from_numpy(x[idx]))

    fixes.write_text("index,label\n0,seven\n1,3\n")
    assert main(["audit", str(tmp_path / "run"), "--data", f"npz:{path}", "--relabel", str(fixes)]) == 2
    with pytest.raises(DeepRecipeError, match="fewer than --folds"):
        from deeprecipe.labelling.audit import audit
        audit(tmp_path / "run", f"npz:{path}", folds=50, show_progress=False)


# ------------------------------------------------------------------------------------------ conv run
@pytest.fixture(scope="module")
def conv_run(tmp_path_factory, mnist_small_npz):
    out = tmp_path_factory.mktemp("conv") / "run"
    api.train(None, out=out, overrides=[f"data.spec={mnist_small_npz}", "train.epochs=3", "model.name=lenet5",
                                        "data.augment=[]", "optim.lr=0.003", "schedule.name=constant"], show_progress=False)
    return out


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_projection_html_shows_one_point_per_image(tmp_path, conv_run, mnist_small_npz):
    from deeprecipe.cli import main
    from deeprecipe.data.sources import load_source
    suspects = tmp_path / "audit.csv"
    suspects.write_text("rank,index\n1,5\n2,17\n3,250\n")
    assert main(["project", str(conv_run), "--data", mnist_small_npz, "--limit", "200", "--suspects", str(suspects),
                 "--out", str(tmp_path / "proj")]) == 0
    html_path = tmp_path / "proj" / "projection_tsne.html"
    assert (tmp_path / "proj" / "projection_tsne.png").stat().st_size > 5000
    source = html_path.read_text()
    assert "<script src" not in source and "http://" not in source and "https://" not in source
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    profile = tmp_path / "profile"
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                          "--dump-dom", html_path.as_uri()], capture_output=True, text=True, timeout=120).stdout
    points = re.findall(r"<circle class=\"pt[^\"]*\"", dom)
    assert len(points) == 200
    # The marked mistakes are exactly the images the run's model gets wrong.
    sampled = [int(i) for i in re.findall(r'"i": (\d+)', source)]
    ds = load_source(mnist_small_npz)
    idx = torch.tensor(sampled)
    predicted = api.load_run(conv_run).logits(ds.images[idx]).argmax(1)
    assert sum("wrong" in p for p in points) == int((predicted != ds.labels[idx]).sum())
    # The three listed suspects are marked when they fall in the sample.
    assert sum("suspect" in p for p in points) == len({5, 17, 250} & set(sampled))
    # Neighbours on the map mostly share a label: the map reflects what the model learned.
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    xy = np.array(re.findall(r"cx='([\d.]+)' cy='([\d.]+)'", source), dtype=float)
    assert xy.shape == (200, 2)
    assert cross_val_score(KNeighborsClassifier(5), xy, ds.labels[idx].numpy(), cv=3).mean() > 0.6
    assert main(["project", str(conv_run), "--data", mnist_small_npz, "--method", "pca"]) == 2


def test_grad_cam_marks_the_evidence(tmp_path, conv_run, mnist_arrays):
    from PIL import Image
    from deeprecipe.cli import main
    from deeprecipe.labelling.explain import grad_cam
    x, _ = mnist_arrays
    images = torch.from_numpy(x[-200:])[:, None]
    cam, probs, chosen = grad_cam(api.load_run(conv_run), images)
    assert cam.shape == (200, 28, 28) and float(cam.min()) >= 0 and float(cam.max()) <= 1.0001
    # The map depends on the class asked about: another class's evidence lies elsewhere.
    other = (chosen + 1) % 10
    cam_other, _, chosen_other = grad_cam(api.load_run(conv_run), images, target=other)
    assert torch.equal(chosen_other, other)
    assert float((cam - cam_other).abs().mean()) > 0.05
    files = []
    for k in range(2):
        f = tmp_path / f"digit{k}.png"
        Image.fromarray(x[-1 - k]).save(f)
        files.append(str(f))
    assert main(["explain", str(conv_run), *files, "--out", str(tmp_path / "cam")]) == 0
    assert len(list((tmp_path / "cam").glob("*_gradcam.png"))) == 2


def test_grad_cam_peaks_on_the_digit_not_the_empty_canvas(tmp_path, mnist_arrays):
    """Each digit pasted at a random place on a blank 56×56 canvas: on held-out canvases the heat-map's
    peak must fall inside the digit's own 28×28 box (chance: about a quarter of the canvas)."""
    from deeprecipe.labelling.explain import grad_cam
    x, y = mnist_arrays
    rng = np.random.default_rng(0)

    def canvases(skip, per_class):
        idx = np.concatenate([np.flatnonzero(y == c)[skip:skip + per_class] for c in range(10)])
        out = np.zeros((len(idx), 56, 56), np.uint8)
        corners = rng.integers(0, 29, size=(len(idx), 2))
        for k, (i, (r, c)) in enumerate(zip(idx, corners)):
            out[k, r:r + 28, c:c + 28] = x[i]
        return out, y[idx], corners

    train_x, train_y, _ = canvases(0, 100)
    held_x, _, corners = canvases(100, 20)
    np.savez(tmp_path / "canvas.npz", x=train_x, y=train_y)
    api.train(None, out=tmp_path / "run", show_progress=False,
              overrides=[f"data.spec=npz:{tmp_path / 'canvas.npz'}", "model.name=convnet", "model.widths=[16,32,64]",
                         "model.convs=1", "train.epochs=6", "data.augment=[]"])
    cam, _, _ = grad_cam(api.load_run(tmp_path / "run"), torch.from_numpy(held_x)[:, None])
    peak = cam.flatten(1).argmax(1).numpy()
    rows, cols = peak // 56, peak % 56
    inside = ((rows >= corners[:, 0]) & (rows < corners[:, 0] + 28) & (cols >= corners[:, 1]) & (cols < corners[:, 1] + 28))
    assert inside.mean() > 0.8, inside.mean()


def test_explain_rejects_a_model_without_convolutions(tmp_path, mnist_small_npz):
    from deeprecipe.cli import main
    api.train(None, out=tmp_path / "run", overrides=[f"data.spec={mnist_small_npz}", "train.epochs=1", *MLP],
              show_progress=False)
    from PIL import Image
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "x.png")
    assert main(["explain", str(tmp_path / "run"), str(tmp_path / "x.png")]) == 2


# ------------------------------------------------------------------------------------------ pseudo-labels
def _semi_supervised_files(tmp_path, mnist_arrays, labelled_per_class, test_per_class, unlabelled=None):
    """A labelled npz (labelled + held-out test images) and an unlabelled npz of the rest, or its first
    `unlabelled` images (with true y)."""
    x, y = mnist_arrays
    keep = _subset(x, y, labelled_per_class + test_per_class)
    rest = np.setdiff1d(np.arange(len(y)), keep)[:unlabelled]
    np.savez(tmp_path / "labelled.npz", x=x[keep], y=y[keep])
    np.savez(tmp_path / "unlabelled.npz", x=x[rest], y=y[rest])
    test_fraction = test_per_class / (labelled_per_class + test_per_class)
    return [f"data.spec=npz:{tmp_path / 'labelled.npz'}", "data.val_fraction=0", f"data.test_fraction={test_fraction}"]


def test_pseudo_labels_are_taken_and_scored(tmp_path, mnist_arrays):
    data = _semi_supervised_files(tmp_path, mnist_arrays, 30, 20, unlabelled=1500)
    common = [*data, "train.epochs=3", *MLP]
    summary = api.train(None, out=tmp_path / "semi", show_progress=False,
                        overrides=[*common, f"data.unlabeled=npz:{tmp_path / 'unlabelled.npz'}",
                                   "pseudo.threshold=0.9", "pseudo.rounds=2"])
    rounds = summary["pseudo"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(0 < r["taken"] < r["unlabeled"] for r in rounds)
    assert all(r["pseudo_acc"] > r["unlabeled_acc"] for r in rounds)  # confident ones are right more often
    assert summary["sizes"]["train"] == 300  # the pseudo-labelled images never count as labelled data
    assert (tmp_path / "semi" / "pseudo_labels.json").is_file()
    # x alone (no labels at all) works too; there is then nothing to score the pseudo-labels against.
    x = np.load(tmp_path / "unlabelled.npz")["x"]
    np.savez(tmp_path / "x_only.npz", x=x[:500])
    summary = api.train(None, out=tmp_path / "xonly", show_progress=False,
                        overrides=[*common, f"data.unlabeled=npz:{tmp_path / 'x_only.npz'}", "pseudo.rounds=1"])
    assert summary["pseudo"][0]["unlabeled"] == 500 and "pseudo_acc" not in summary["pseudo"][0]


def test_online_pseudo_labels_learn_strong_views_of_confident_images(tmp_path, mnist_arrays):
    """pseudo.method=online (FixMatch): one trainer, the unlabelled images in every step; scored at the end."""
    data = _semi_supervised_files(tmp_path, mnist_arrays, 30, 20, unlabelled=1500)
    common = [*data, "train.epochs=6", *MLP, f"data.unlabeled=npz:{tmp_path / 'unlabelled.npz'}",
              "pseudo.method=online", "pseudo.threshold=0.9", "pseudo.ratio=2"]
    summary = api.train(None, out=tmp_path / "online", show_progress=False, overrides=common)
    without = api.train(None, out=tmp_path / "weight0", show_progress=False, overrides=[*common, "pseudo.weight=0"])
    (row,) = summary["pseudo"]
    # The consistency term is what teaches the unlabelled images: without it the model knows them less well.
    assert row["unlabeled_acc"] > without["pseudo"][0]["unlabeled_acc"] + 0.02, (row, without["pseudo"])
    assert row["method"] == "online" and 0 < row["taken"] <= 1500
    assert 0 < row["views_taken_share"] <= 1
    assert row["pseudo_acc"] > row["unlabeled_acc"] > 0.5
    assert summary["sizes"]["train"] == 300 and summary["test_acc"] > 0.6
    assert (tmp_path / "online" / "pseudo_labels.json").is_file()


def test_strong_augment_that_mixes_labels_is_refused(capsys):
    from deeprecipe.cli import main
    assert main(["train", "--set", "pseudo.strong_augment=[mixup]", "--set", "train.epochs=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pseudo.strong_augment" in err[0]


def test_pseudo_label_experiment_quick_reads_gain_against_headroom(tmp_path):
    """`experiment pseudo-labels --quick`: 1 seed, 1,500 unlabelled digits, 8 epochs, one round (~20 s)."""
    from deeprecipe.experiments.registry import run_experiment
    result, out = run_experiment("pseudo-labels", quick=True, out=tmp_path)
    arm = {r["arm"]: r for r in result.rows}
    assert list(arm) == ["labels_alone", "labels_alone_same_steps", "pseudo_labels", "all_labels"]
    assert arm["all_labels"]["labelled_images"] == 2000 and arm["pseudo_labels"]["labelled_images"] == 500
    assert arm["pseudo_labels"]["mean_acc"] > arm["labels_alone"]["mean_acc"]       # unlabelled images help...
    assert arm["all_labels"]["mean_acc"] > arm["labels_alone"]["mean_acc"]          # ...and true labels bound them
    assert 0 < arm["pseudo_labels"]["taken_last_round"][0] <= 1500
    assert arm["pseudo_labels"]["pseudo_label_acc_last_round"][0] > 0.9
    text = (out / "conclusion.txt").read_text()
    assert "All labels by hand" in text and "lenet5: " in text and set(result.checks) and (out / "pseudo_labels.png").stat().st_size > 1000


@pytest.mark.slow
def test_pseudo_labels_beat_500_labels_alone(tmp_path):
    """The full `experiment pseudo-labels`: 50 labels/class, the other 3,500 unlabelled, 3 seeds, an MLP and
    LeNet-5 (20–30 minutes on one core; numbers in docs/experiments.md).

    The issue's claim (≥ 3 points over the 500 labels alone) is asserted where the true labels leave room
    for it — the MLP, against its baseline trained as long — and not for LeNet-5, where all 3,500 true
    labels add less than 3 points; there both methods must still beat that baseline on every seed.
    """
    from deeprecipe.experiments.registry import run_experiment
    result, _ = run_experiment("pseudo-labels", quick=False, out=tmp_path)
    print(result.conclusion)

    def arms(model):
        by = {r["arm"]: r for r in result.rows if r["model"] == model}
        return by, max((by["labels_alone"], by["labels_alone_same_steps"]), key=lambda r: r["mean_acc"])

    mlp, mlp_base = arms("mlp")
    assert mlp["pseudo_labels_online"]["mean_acc"] >= mlp_base["mean_acc"] + 0.03, (mlp["pseudo_labels_online"], mlp_base)
    assert all(s > b for s, b in zip(mlp["pseudo_labels_online"]["accs"], mlp_base["accs"]))
    lenet, lenet_base = arms("lenet5")
    for method in ("pseudo_labels", "pseudo_labels_online"):
        assert all(s > b for s, b in zip(lenet[method]["accs"], lenet_base["accs"])), (method, lenet[method], lenet_base)
        assert min(lenet[method]["pseudo_label_acc_last_round"]) > 0.95
    for by in (mlp, lenet):
        assert by["all_labels"]["mean_acc"] > max(r["mean_acc"] for a, r in by.items() if a != "all_labels")
