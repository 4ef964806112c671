"""How much of the unlabelled data's value do pseudo-labels recover? 50 labels per class of builtin:mnist5k.

Five arms per seed, all with the same model and augmentation, tested on a fixed held-out set:
- labels alone: the 500 labelled images, for the same epochs;
- labels alone, same steps: as many optimizer steps as a pseudo-label student takes (it sees ~8× the
  images per epoch) — without it, part of any "gain" is only longer training;
- pseudo-labels: the same 500 plus every other image unlabelled (`data.unlabeled`, teacher–student rounds);
- online pseudo-labels (`pseudo.method=online`, FixMatch): the same, learnt every step, for the same
  number of optimizer steps as the same-steps arm;
- all labels: the same images with their true labels — the most any use of the unlabelled images could give.

The last arm is what makes the gain readable: a gain is only as large as the headroom it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .registry import ExperimentResult, checks_line, register_experiment

ARMS = ("labels_alone", "labels_alone_same_steps", "pseudo_labels", "pseudo_labels_online", "all_labels")
PSEUDO_ARMS = ("pseudo_labels", "pseudo_labels_online")
COLOURS = {"labels_alone": "#aaaaaa", "labels_alone_same_steps": "#777777", "pseudo_labels": "#1f77b4",
           "pseudo_labels_online": "#6baed6",
           "all_labels": "#2ca02c"}


@dataclass
class PseudoStudy:
    labels_per_class: int = 50
    test_per_class: int = 100
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    arms: tuple[str, ...] = ARMS
    unlabelled_limit: int | None = None   # use only this many unlabelled images (quick runs)
    overrides: list[str] = field(default_factory=lambda: [
        "model.name=lenet5", "train.epochs=30", "data.augment=[translate:2,rotate:10]",
        "pseudo.threshold=0.9", "pseudo.rounds=3", "train.threads=1"])


def study_splits(labels: np.ndarray, s: PseudoStudy, seed: int) -> dict[str, np.ndarray]:
    """A fixed test set (the first `test_per_class` of each class), `labels_per_class` labelled images
    drawn by seed from the rest, and every remaining image as the unlabelled pool."""
    rng = np.random.default_rng(seed)
    test, labelled, pool = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        test.append(idx[:s.test_per_class])
        rest = idx[s.test_per_class:]
        chosen = rng.choice(rest, size=s.labels_per_class, replace=False)
        labelled.append(chosen)
        pool.append(np.setdiff1d(rest, chosen))
    unlabelled = rng.permutation(np.concatenate(pool))[:s.unlabelled_limit]
    return {"train": np.sort(np.concatenate(labelled)), "test": np.concatenate(test), "unlabelled": np.sort(unlabelled)}


def train_arm(ds, arm: str, seed: int, s: PseudoStudy, workdir: Path) -> dict:
    """One run of one arm; returns its test accuracy (and the pseudo-label rounds for that arm)."""
    from ..api import PreparedData, Session
    from ..config import resolve_config
    from ..data.stats import channel_stats
    from ..labelling.pseudo import fit_with_pseudo_labels
    sp = study_splits(ds.labels.numpy(), s, seed)
    train = np.concatenate([sp["train"], sp["unlabelled"]]) if arm == "all_labels" else sp["train"]
    overrides = [*s.overrides, f"train.seed={seed}", "data.val_fraction=0"]
    if arm in PSEUDO_ARMS:
        path = workdir / f"unlabelled_seed{seed}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        keep = torch.from_numpy(sp["unlabelled"])
        # The true labels go along only to score the pseudo-labels; pseudo.py never trains on them.
        np.savez(path, x=ds.images[keep][:, 0].numpy(), y=ds.labels[keep].numpy())  # gray digits: N×H×W
        overrides.append(f"data.unlabeled=npz:{path}")
    if arm == "pseudo_labels_online":
        overrides.append("pseudo.method=online")
    cfg = resolve_config(None, overrides)
    if arm in ("labels_alone_same_steps", "pseudo_labels_online"):
        scale = (len(sp["train"]) + len(sp["unlabelled"])) / len(sp["train"])
        cfg = resolve_config(None, [*overrides, f"train.epochs={round(cfg.train.epochs * scale)}"])
    # Normalised with the labelled images' statistics in every arm, so only the training labels differ.
    mean, std = channel_stats(ds.images[torch.from_numpy(sp["train"])])
    data = PreparedData(ds, {"train": train, "val": np.array([], dtype=np.int64), "test": sp["test"]}, mean, std)
    session = Session.create(cfg, data)
    rounds = None
    if arm in PSEUDO_ARMS:
        trainer, rounds = fit_with_pseudo_labels(session, None, show_progress=False)
    else:
        trainer = session.make_trainer(None, show_progress=False)
        trainer.fit()
    acc = trainer.evaluate(data.loader("test", cfg, session.device, channels_last=session.channels_last))["acc"]
    return {"acc": float(acc), "labelled_images": int(len(train)), "rounds": rounds}


def run_study(s: PseudoStudy, workdir: Path) -> list[dict]:
    from ..data.sources import load_source
    from ..progress import track
    ds = load_source("builtin:mnist5k")
    runs: dict[str, list[dict]] = {a: [] for a in s.arms}
    for arm, seed in track([(a, seed) for seed in s.seeds for a in s.arms], "pseudo-label study runs"):
        runs[arm].append(train_arm(ds, arm, seed, s, workdir))
    rows = []
    for arm, rs in runs.items():
        accs = [r["acc"] for r in rs]
        row = {"arm": arm, "mean_acc": float(np.mean(accs)), "std_acc": float(np.std(accs)),
               "accs": [round(a, 4) for a in accs], "labelled_images": rs[0]["labelled_images"]}
        if arm in PSEUDO_ARMS:
            last = [r["rounds"][-1] for r in rs if r["rounds"]]
            row["taken_last_round"] = [x["taken"] for x in last]
            row["pseudo_label_acc_last_round"] = [round(x["pseudo_acc"], 4) for x in last]
        rows.append(row)
    return rows


def conclusion(rows: list[dict]) -> tuple[str, dict[str, bool]]:
    """Gains over the stronger labels-alone baseline, and what share of the all-labels headroom they are."""
    by = {r["arm"]: r for r in rows}
    checks: dict[str, bool] = {}
    lines = []
    bases = [by[a] for a in ("labels_alone", "labels_alone_same_steps") if a in by]
    if not bases:
        return checks_line(checks), checks
    # Claims are judged against the stronger baseline: a weaker one would credit mere longer training.
    base = max(bases, key=lambda r: r["mean_acc"])
    head = 100 * (by["all_labels"]["mean_acc"] - base["mean_acc"]) if "all_labels" in by else None
    lines.append("; ".join(f"{_name(b['arm']).capitalize()}: {100 * b['mean_acc']:.1f}%" for b in bases) + ".")
    for semi in (by[a] for a in PSEUDO_ARMS if a in by):
        gain = 100 * (semi["mean_acc"] - base["mean_acc"])
        share = f", {max(gain, 0.0) / head:.0%} of the headroom" if head and head > 0 else ""
        lines.append(f"{_name(semi['arm']).capitalize()}: {100 * semi['mean_acc']:.1f}% ({gain:+.1f} points over "
                     f"{_name(base['arm'])}{share}).")
        checks[f"{_name(semi['arm'])} beat {_name(base['arm'])} on every seed"] = all(
            p > b for p, b in zip(semi["accs"], base["accs"]))
        checks[f"{_name(semi['arm'])} gain ≥ 3 points"] = gain >= 3.0
    if head is not None:
        lines.append(f"Labelling every unlabelled image by hand gives {100 * by['all_labels']['mean_acc']:.1f}% "
                     f"({head:+.1f} points over {_name(base['arm'])}: the most these images could add).")
        if head < 3.0:
            lines.append("A 3-point gain is out of reach here: it is more than the true labels give.")
    lines.append(checks_line(checks))
    return " ".join(lines), checks


NAMES = {"labels_alone": "labels alone", "labels_alone_same_steps": "labels alone (same steps)",
         "pseudo_labels": "pseudo-labels", "pseudo_labels_online": "online pseudo-labels", "all_labels": "all labels"}


def _name(arm: str) -> str:
    return NAMES.get(arm, arm)


def plot(rows: list[dict], out: Path) -> Path:
    from ..plots import pyplot, save_png
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    names = [_name(r["arm"]).replace(" (", "\n(").replace("online ", "online\n") for r in rows]
    ax.bar(names, [100 * r["mean_acc"] for r in rows], yerr=[100 * r["std_acc"] for r in rows], capsize=4,
           color=[COLOURS[r["arm"]] for r in rows])
    for i, r in enumerate(rows):
        ax.scatter([i] * len(r["accs"]), [100 * a for a in r["accs"]], color="black", s=12, zorder=3)
    low = min(100 * a for r in rows for a in r["accs"])
    ax.set_ylim(max(0.0, low - 3), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("50 labels per class + the rest of mnist5k")
    ax.grid(axis="y", alpha=0.3)
    path = out / "pseudo_labels.png"
    save_png(fig, path, dpi=120)
    return path


@register_experiment("pseudo-labels", "Pseudo-labelling unlabelled images beats training on 50 labels per class alone")
def pseudo_labels_experiment(quick: bool, out: Path) -> ExperimentResult:
    s = PseudoStudy()
    if quick:
        s = PseudoStudy(seeds=[0], unlabelled_limit=1500, arms=tuple(a for a in ARMS if a != "pseudo_labels_online"),
                        overrides=["model.name=lenet5", "train.epochs=8", "data.augment=[translate:2,rotate:10]",
                                   "pseudo.threshold=0.9", "pseudo.rounds=1", "train.threads=1"])
    rows = run_study(s, out / "data")
    text, checks = conclusion(rows)
    return ExperimentResult(rows, text, [plot(rows, out)], checks)
