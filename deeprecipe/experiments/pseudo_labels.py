"""How much of the unlabelled data's value do pseudo-labels recover? 50 labels per class of builtin:mnist5k.

Five arms per seed, for an MLP and for LeNet-5, each arm with the same model and augmentation, tested
on a fixed held-out set:
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

from ..config import resolve_config
from ..data.sources import load_source
from ..labelling.pseudo import fit_with_pseudo_labels
from ..plots import pyplot, save_png
from ..progress import track
from ..session import PreparedData, Session
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
    # An MLP (Lee 2013's network) and a CNN: how much there is to gain depends on the model's headroom.
    models: tuple[str, ...] = ("mlp", "lenet5")
    unlabelled_limit: int | None = None   # use only this many unlabelled images (quick runs)
    # ratio 7 is FixMatch's own default; threshold 0.9 is this study's for both methods.
    overrides: list[str] = field(default_factory=lambda: [
        "train.epochs=30", "data.augment=[translate:2,rotate:10]", "pseudo.threshold=0.9", "pseudo.rounds=3",
        "pseudo.ratio=7", "train.threads=1"])


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


def train_arm(ds, model: str, arm: str, seed: int, s: PseudoStudy, workdir: Path) -> dict:
    """One run of one arm; returns its test accuracy (and the pseudo-label rounds for that arm)."""
    sp = study_splits(ds.labels.numpy(), s, seed)
    train = np.concatenate([sp["train"], sp["unlabelled"]]) if arm == "all_labels" else sp["train"]
    overrides = [*s.overrides, f"model.name={model}", f"train.seed={seed}", "data.val_fraction=0"]
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
    data = PreparedData.from_splits(ds, {"train": train, "val": np.array([], dtype=np.int64), "test": sp["test"]},
                                    stats_from=sp["train"])
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
    """One row per (model, arm): mean, std and per-seed test accuracy, and the pseudo-labels' quality."""
    ds = load_source("builtin:mnist5k")
    runs: dict[tuple[str, str], list[dict]] = {(m, a): [] for m in s.models for a in s.arms}
    jobs = [(m, a, seed) for m in s.models for seed in s.seeds for a in s.arms]
    for model, arm, seed in track(jobs, "pseudo-label study runs"):
        runs[(model, arm)].append(train_arm(ds, model, arm, seed, s, workdir))
    rows = []
    for (model, arm), rs in runs.items():
        accs = [r["acc"] for r in rs]
        row = {"model": model, "arm": arm, "mean_acc": float(np.mean(accs)), "std_acc": float(np.std(accs)),
               "accs": [round(a, 4) for a in accs], "labelled_images": rs[0]["labelled_images"]}
        if arm in PSEUDO_ARMS:
            last = [r["rounds"][-1] for r in rs if r["rounds"]]
            row["taken_last_round"] = [x["taken"] for x in last]
            row["pseudo_label_acc_last_round"] = [round(x["pseudo_acc"], 4) for x in last]
        rows.append(row)
    return rows


def conclusion(rows: list[dict]) -> tuple[str, dict[str, bool]]:
    """Per model: gains over the stronger labels-alone baseline, and their share of the all-labels headroom."""
    checks: dict[str, bool] = {}
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows):
        lines += _model_conclusion(model, {r["arm"]: r for r in rows if r["model"] == model}, checks)
    lines.append(checks_line(checks))
    return " ".join(lines), checks


def _model_conclusion(model: str, by: dict[str, dict], checks: dict[str, bool]) -> list[str]:
    bases = [by[a] for a in ("labels_alone", "labels_alone_same_steps") if a in by]
    if not bases:
        return []
    # Claims are judged against the stronger baseline: a weaker one would credit mere longer training.
    base = max(bases, key=lambda r: r["mean_acc"])
    head = 100 * (by["all_labels"]["mean_acc"] - base["mean_acc"]) if "all_labels" in by else None
    lines = [f"{model}: " + "; ".join(f"{_name(b['arm'])} {100 * b['mean_acc']:.1f}%" for b in bases) + "."]
    for semi in (by[a] for a in PSEUDO_ARMS if a in by):
        gain = 100 * (semi["mean_acc"] - base["mean_acc"])
        share = f", {max(gain, 0.0) / head:.0%} of the headroom" if head and head > 0 else ""
        lines.append(f"{_name(semi['arm']).capitalize()}: {100 * semi['mean_acc']:.1f}% ({gain:+.1f} points over "
                     f"{_name(base['arm'])}{share}).")
        checks[f"{model}: {_name(semi['arm'])} beat {_name(base['arm'])} on every seed"] = all(
            p > b for p, b in zip(semi["accs"], base["accs"]))
        checks[f"{model}: {_name(semi['arm'])} gain ≥ 3 points"] = gain >= 3.0
    if head is not None:
        lines.append(f"All labels by hand: {100 * by['all_labels']['mean_acc']:.1f}% ({head:+.1f} points, the most "
                     f"these images could add{'; a 3-point gain is out of reach' if head < 3.0 else ''}).")
    return lines


NAMES = {"labels_alone": "labels alone", "labels_alone_same_steps": "labels alone (same steps)",
         "pseudo_labels": "pseudo-labels", "pseudo_labels_online": "online pseudo-labels", "all_labels": "all labels"}


def _name(arm: str) -> str:
    return NAMES.get(arm, arm)


def plot(rows: list[dict], out: Path) -> Path:
    """Grouped bars: one group per model, one bar per arm, the seeds as dots."""
    plt = pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(4.6 + 2.4 * len(models), 4))
    for j, arm in enumerate(arms):
        for i, model in enumerate(models):
            r = next((r for r in rows if r["model"] == model and r["arm"] == arm), None)
            if r is None:
                continue
            x = i + (j - (len(arms) - 1) / 2) * width
            ax.bar(x, 100 * r["mean_acc"], width, color=COLOURS[arm], label=_name(arm) if i == 0 else None)
            ax.scatter([x] * len(r["accs"]), [100 * a for a in r["accs"]], color="black", s=8, zorder=3)
    ax.set_xticks(range(len(models)), labels=models)
    low = min(100 * a for r in rows for a in r["accs"])
    ax.set_ylim(max(0.0, low - 3), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("50 labels per class + the rest of mnist5k unlabelled")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = out / "pseudo_labels.png"
    save_png(fig, path, dpi=120)
    return path


@register_experiment("pseudo-labels", "Pseudo-labelling unlabelled images beats training on 50 labels per class alone")
def pseudo_labels_experiment(quick: bool, out: Path) -> ExperimentResult:
    s = PseudoStudy()
    if quick:
        s = PseudoStudy(seeds=[0], unlabelled_limit=1500, models=("lenet5",),
                        arms=tuple(a for a in ARMS if a != "pseudo_labels_online"),
                        overrides=["train.epochs=8", "data.augment=[translate:2,rotate:10]", "pseudo.threshold=0.9",
                                   "pseudo.rounds=1", "train.threads=1"])
    rows = run_study(s, out / "data")
    text, checks = conclusion(rows)
    return ExperimentResult(rows, text, [plot(rows, out)], checks)
