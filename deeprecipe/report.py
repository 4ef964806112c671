"""A run directory → one self-contained `report.html` (PNG figures embedded as base64).

Sections: headline numbers, curves, learning rate, confusion matrix, per-class table, the most
confidently misclassified test images, an augmentation preview, the diagnosis and the config.
A section whose inputs are missing says so instead of failing the whole report.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from . import plots
from .augment import build_pipeline
from .config import resolve_config
from .errors import DeepRecipeError
from .pages import bullet_list, esc, img_tag, page, table
from .session import prepare_data
from .utils import atomic_write_text, read_jsonl

MISCLASSIFIED_SHOWN = 24
AUGMENT_SHOWN = 8
AUGMENT_ROUNDS = 3


# ------------------------------------------------------------------------------------------ run contents
class RunFiles:
    """Lazy access to what a run directory holds."""

    def __init__(self, run_dir: str | Path, data=None):
        self.dir = Path(run_dir)
        if not (self.dir / "summary.json").is_file():
            raise DeepRecipeError(f"{self.dir} has no summary.json", "give a run folder written by `deeprecipe train`")
        self.summary = json.loads((self.dir / "summary.json").read_text(encoding="utf-8"))
        self.history = read_jsonl(self.dir / "metrics.jsonl")
        self.steps = read_jsonl(self.dir / "steps.jsonl")
        config_file = self.dir / "config.yaml"
        self.config_text = config_file.read_text(encoding="utf-8") if config_file.is_file() else ""
        self._dataset = data  # the PreparedData of the run, when the caller already holds it

    def config(self):
        return resolve_config(str(self.dir / "config.yaml"))

    def dataset(self):
        """The run's images, conformed as in training (indices in test_predictions.npz point here)."""
        if self._dataset is None:
            self._dataset = prepare_data(self.config())
        return self._dataset


# ------------------------------------------------------------------------------------------ html pieces
def _fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return esc(str(v))


# ------------------------------------------------------------------------------------------ sections
def section_headline(run: RunFiles) -> str:
    s = run.summary
    best_val = max((r["val_acc"] for r in run.history if r.get("val_acc") is not None), default=None)
    cfg = yaml.safe_load(run.config_text) if run.config_text else {}
    facts = [
        ("test accuracy", _fmt(s.get("test_acc"))), ("test loss", _fmt(s.get("test_loss"))),
        ("top-5", _fmt(s.get("test_top5"))), ("best val accuracy", _fmt(best_val)),
        ("best epoch", _fmt(s.get("best_epoch"))), ("weights evaluated", _weights_evaluated(s, cfg)),
        ("model", _fmt(cfg.get("model", {}).get("name"))),
        ("data", _fmt(cfg.get("data", {}).get("spec"))), ("parameters", f"{s.get('params', 0):,}"),
        ("training time", f"{s.get('train_seconds', 0):.1f} s"),
        ("images / s", _fmt(s.get("images_per_second"), 0)),
        ("sizes", esc(", ".join(f"{k} {v}" for k, v in (s.get("sizes") or {}).items()))),
    ]
    norm = s.get("normalization")
    if norm:
        facts.append(("normalised with", esc(
            f"mean {', '.join(f'{v:.3f}' for v in norm['mean'])} / std {', '.join(f'{v:.3f}' for v in norm['std'])} "
            f"({norm['source']})")))
    cards = "".join(f'<div class="card"><div class="k">{k}</div><div class="v">{v}</div></div>' for k, v in facts)
    return f'<div class="cards">{cards}</div>'


def _weights_evaluated(summary: dict, cfg: dict) -> str:
    """EMA average or the raw weights (runs from before summary.json said so show "–")."""
    which = summary.get("evaluated_weights")
    if which == "ema":
        return f"EMA average (decay {_fmt((cfg.get('regularize') or {}).get('ema'))})"
    return "raw" if which == "raw" else "–"


def section_curves(run: RunFiles) -> str:
    if not run.history:
        return "<p>No metrics.jsonl rows: the run finished no epoch.</p>"
    return img_tag(plots.curves_png({"run": run.history}), "loss and accuracy curves")


def section_lr(run: RunFiles) -> str:
    if run.steps:
        return img_tag(plots.lr_png(run.steps), "learning rate over steps")
    if run.history:  # fall back to the per-epoch learning rate
        return img_tag(plots.lr_png([{"step": r["epoch"], "lr": r["lr"]} for r in run.history]), "learning rate per epoch")
    return "<p>No learning-rate log.</p>"


def section_confusion(run: RunFiles) -> str:
    s = run.summary
    if not s.get("confusion"):
        return "<p>No confusion matrix in summary.json.</p>"
    return img_tag(plots.confusion_png(s["confusion"], s["classes"]), "confusion matrix")


def section_per_class(run: RunFiles) -> str:
    per_class = run.summary.get("per_class") or {}
    if not per_class:
        return "<p>No per-class metrics in summary.json.</p>"
    rows = [[esc(c), _fmt(m["precision"], 3), _fmt(m["recall"], 3), _fmt(m["f1"], 3), str(m["support"])]
            for c, m in per_class.items()]
    worst = min(per_class, key=lambda c: per_class[c]["f1"])
    note = f"<p>Weakest class by F1: <b>{esc(worst)}</b> ({per_class[worst]['f1']:.3f}).</p>"
    return table(["class", "precision", "recall", "F1", "support"], rows, escape=False, cls="per-class") + note


def most_confident_mistakes(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Positions (into probs) of wrong predictions, most confident first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:k]


def section_misclassified(run: RunFiles) -> str:
    path = run.dir / "test_predictions.npz"
    if not path.is_file():
        return "<p>No test_predictions.npz in the run.</p>"
    with np.load(path) as z:
        probs, labels, indices = z["probs"], z["labels"], z["indices"]
    order = most_confident_mistakes(probs, labels, MISCLASSIFIED_SHOWN)
    if len(order) == 0:
        return f"<p>No mistakes on the {len(labels)} test images.</p>"
    classes = run.summary["classes"]
    images = run.dataset().ds.images[torch.from_numpy(indices[order]).long()].numpy()
    pred = probs.argmax(1)
    titles = [f"true {classes[labels[i]]}\npred {classes[pred[i]]} {probs[i, pred[i]]:.0%}" for i in order]
    wrong_total = int((pred != labels).sum())
    png = plots.image_grid_png(images, titles, cols=8)
    return (f"<p>{wrong_total} of {len(labels)} test images are misclassified; the {len(order)} the model was "
            f"surest about are shown (true label, predicted label and its probability).</p>" + img_tag(png, "misclassified"))


def section_augment(run: RunFiles) -> str:
    cfg = run.config()
    data = run.dataset()
    pipeline = build_pipeline(cfg.data.augment, len(data.classes))
    if pipeline is None:
        return "<p>No training augmentation (data.augment is empty).</p>"
    images, labels = data.part("train")
    g = torch.Generator().manual_seed(cfg.train.seed)
    pick = torch.randperm(len(labels), generator=g)[:AUGMENT_SHOWN]  # a mix of classes, not the first few
    originals, labels = images[pick], labels[pick]
    rows = [originals]
    for _ in range(AUGMENT_ROUNDS):
        x, _y = pipeline(originals.float().div(255.0), labels, g)
        rows.append((x * 255.0).round().clamp(0, 255).to(torch.uint8))
    grid = torch.cat(rows).numpy()
    titles = ["original"] * len(originals) + ["augmented"] * (len(grid) - len(originals))
    png = plots.image_grid_png(grid, titles, cols=len(originals))
    return (f"<p>Pipeline <code>{esc(', '.join(cfg.data.augment))}</code>: first row random training images, "
            f"then {AUGMENT_ROUNDS} random draws of the augmentation.</p>" + img_tag(png, "augmentation preview"))


def section_diagnosis(run: RunFiles) -> str:
    diag = run.summary.get("diagnosis")
    if not diag:
        return "<p>No diagnosis for this run (the diagnosis module was not available when it was trained).</p>"
    parts = [f'<p class="verdict">{esc(str(diag.get("verdict", "")))}</p>']
    ctx = diag.get("context") or {}
    if ctx.get("val_images") is not None:
        parts.append(f"<p>Judged with {ctx.get('num_classes')} classes, {ctx['val_images']} validation images "
                     f"(accuracies carry 95% Wilson intervals), schedule {esc(str(ctx.get('schedule')))}.</p>")
    for key in ("evidence", "advice"):
        items = diag.get(key) or []
        if isinstance(items, str):
            items = [items]
        if items:
            parts.append(f"<h3>{key}</h3>" + bullet_list([str(i) for i in items]))
    return "".join(parts)


def section_config(run: RunFiles) -> str:
    return f"<pre>{esc(run.config_text or '(no config.yaml)')}</pre>"


SECTIONS: list[tuple[str, str, Callable[[RunFiles], str]]] = [
    ("summary", "Summary", section_headline),
    ("curves", "Loss and accuracy", section_curves),
    ("lr", "Learning rate", section_lr),
    ("confusion", "Confusion matrix", section_confusion),
    ("per-class", "Per-class precision, recall, F1", section_per_class),  # beside the matrix on wide screens
    ("misclassified", "Most confident mistakes", section_misclassified),
    ("augment", "Augmentation preview", section_augment),
    ("diagnosis", "Diagnosis", section_diagnosis),
    ("config", "Resolved config", section_config),
]

STYLE = """
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px;background:#fafafa}
.card .k{font-size:12px;color:#666} .card .v{font-size:18px;font-weight:600}
th,td{text-align:right} th:first-child,td:first-child{text-align:left}
.verdict{font-size:18px;font-weight:600}
.pair{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start} .pair>section{flex:1 1 420px}
"""


def render_section(run: RunFiles, key: str, title: str, build: Callable[[RunFiles], str]) -> str:
    try:
        body = build(run)
    except Exception as err:  # one broken section must not cost the others
        body = f'<p class="error">This section could not be built: {esc(type(err).__name__)}: {esc(str(err))}</p>'
    return f'<section id="{key}"><h2>{esc(title)}</h2>{body}</section>'


def build_report(run_dir: str | Path, data=None) -> Path:
    """Write RUN/report.html and return its path. `data` (the run's PreparedData) saves re-reading the data."""
    run = RunFiles(run_dir, data)
    rendered = {key: render_section(run, key, title, build) for key, title, build in SECTIONS}
    rendered["confusion"] = f'<div class="pair">{rendered["confusion"]}{rendered.pop("per-class")}</div>'
    body = "".join(rendered.values())
    out = run.dir / "report.html"
    atomic_write_text(out, page(f"deeprecipe report – {run.dir.resolve().name}", body, STYLE,
                                heading="deeprecipe report", subtitle=str(run.dir.resolve())))
    return out
