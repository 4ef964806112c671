"""Find labels that are probably wrong, with out-of-fold predictions (after Northcutt et al.'s confident learning).

Every image is scored by a model that never trained on it: the data is cut into k stratified folds
(scikit-learn's StratifiedKFold), a model of the run's recipe trains on k−1 of them and predicts
the held-out one. An image whose given label gets a low out-of-fold probability is a suspect.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

from ..data.sources import ImageSet, conform, load_source
from ..errors import DeepRecipeError
from ..loaded import load_run
from ..pages import esc, page, png_data_uri
from ..progress import track
from ..session import Session
from ..utils import atomic_write_bytes, atomic_write_text, note
from .fitting import fit_subset, predict_probs, subset_data, with_epochs


@dataclass
class AuditResult:
    probs: np.ndarray          # (N, C) out-of-fold probabilities
    labels: np.ndarray         # (N,) given labels
    order: np.ndarray          # image indices, most suspect first

    @property
    def p_given(self) -> np.ndarray:
        return self.probs[np.arange(len(self.labels)), self.labels]

    @property
    def predicted(self) -> np.ndarray:
        return self.probs.argmax(1)

    def top(self, fraction: float) -> np.ndarray:
        return self.order[:max(1, int(round(fraction * len(self.order))))]


def load_audit_data(run_classes: list[str], spec: str, input_shape) -> ImageSet:
    """The spec's images in the run's input shape, with labels mapped onto the run's classes."""
    ds = load_source(spec)
    c, h, w = input_shape
    if tuple(ds.images.shape[1:]) != (c, h, w):
        ds.images = conform(ds.images, c, (h, w))
    if ds.classes != run_classes:
        index = {name: i for i, name in enumerate(run_classes)}
        unknown = [name for name in ds.classes if name not in index]
        if unknown:
            raise DeepRecipeError(f"{spec} has classes the run never saw: {', '.join(unknown[:5])}",
                                  "audit data labelled with the run's classes")
        ds.labels = torch.tensor([index[ds.classes[i]] for i in ds.labels.tolist()])
        ds.classes = list(run_classes)
    return ds


def out_of_fold_probs(cfg, ds: ImageSet, folds: int = 5, seed: int = 0, show_progress: bool = True) -> np.ndarray:
    """(N, C) probabilities, each row from the model of the fold that held that image out."""
    labels = ds.labels.numpy()
    smallest = int(np.bincount(labels)[np.unique(labels)].min()) if len(labels) else 0
    if folds < 2:
        raise DeepRecipeError(f"--folds {folds} must be at least 2", "e.g. --folds 5")
    if smallest < folds:
        raise DeepRecipeError(f"a class has only {smallest} image(s), fewer than --folds {folds}",
                              "use fewer folds or more images per class")
    probs = np.zeros((len(labels), len(ds.classes)), dtype=np.float32)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    session = None
    for k, (train_idx, held_idx) in enumerate(track(list(splitter.split(np.zeros(len(labels)), labels)),
                                                    "audit folds")):
        data = subset_data(ds, train_idx, held_idx)
        session = session or Session.create(cfg, data)
        trainer = fit_subset(cfg, data, session)
        probs[held_idx] = predict_probs(trainer, data)
        if show_progress:
            acc = float((probs[held_idx].argmax(1) == labels[held_idx]).mean())
            note(f"fold {k + 1}/{folds}: trained on {len(train_idx)}, held-out accuracy {acc:.4f}")
    return probs


def audit(run: str | Path, spec: str, folds: int = 5, epochs: int | None = None, seed: int = 0,
          show_progress: bool = True, ds: ImageSet | None = None) -> tuple[AuditResult, ImageSet]:
    """Rank every image of `spec` by how unlikely its given label is under out-of-fold predictions."""
    loaded = load_run(run)
    cfg = with_epochs(loaded.cfg, epochs)
    ds = ds if ds is not None else load_audit_data(loaded.classes, spec, loaded.input_shape)
    probs = out_of_fold_probs(cfg, ds, folds, seed, show_progress)
    labels = ds.labels.numpy()
    p_given = probs[np.arange(len(labels)), labels]
    order = np.argsort(p_given, kind="stable")
    return AuditResult(probs, labels, order), ds


# ------------------------------------------------------------------------------------------ outputs
def audit_csv(result: AuditResult, ds: ImageSet) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["rank", "index", "path", "given", "predicted", "p_given", "p_predicted"])
    p_given, pred = result.p_given, result.predicted
    for rank, i in enumerate(result.order, start=1):
        w.writerow([rank, int(i), ds.paths[i] if ds.paths else "", ds.classes[result.labels[i]], ds.classes[pred[i]],
                    f"{p_given[i]:.6f}", f"{result.probs[i, pred[i]]:.6f}"])
    return buf.getvalue()


def audit_html(result: AuditResult, ds: ImageSet, top: int = 100) -> str:
    p_given, pred = result.p_given, result.predicted
    cards = []
    for rank, i in enumerate(result.order[:top], start=1):
        name = f"<div class='path'>{esc(ds.paths[i])}</div>" if ds.paths else ""
        cards.append(f"<div class='card'><img src='{png_data_uri(ds.images[i], 3)}' alt='image {int(i)}'>"
                     f"<div>#{rank} · index {int(i)}</div>{name}"
                     f"<div>given <b>{esc(ds.classes[result.labels[i]])}</b> ({p_given[i]:.3f})</div>"
                     f"<div>model says <b>{esc(ds.classes[pred[i]])}</b> ({result.probs[i, pred[i]]:.3f})</div></div>")
    intro = (f"<p>{len(result.order)} images scored out-of-fold; the {len(cards)} whose given label the model "
             "believes least, most suspect first. Fix the wrong ones in a CSV (index or path, new label) and "
             "apply it with <code>deeprecipe audit RUN --data SPEC --relabel FILE</code>.</p>")
    style = (".grid{display:flex;flex-wrap:wrap;gap:10px}.card{border:1px solid #ccc;padding:6px;font-size:12px;"
             "width:140px}.card img{image-rendering:pixelated;width:84px}.path{color:#666;word-break:break-all}")
    return page("Label audit: top suspects", intro + "<div class='grid'>" + "".join(cards) + "</div>", style)


def write_audit(result: AuditResult, ds: ImageSet, out: str | Path, top: int = 100) -> dict[str, Path]:
    out = Path(out)
    paths = {"csv": out / "audit.csv", "html": out / "audit.html"}
    atomic_write_text(paths["csv"], audit_csv(result, ds))
    atomic_write_text(paths["html"], audit_html(result, ds, top))
    return paths


# ------------------------------------------------------------------------------------------ relabel
def read_corrections(path: str | Path, ds: ImageSet) -> dict[int, int]:
    """CSV rows `index or path, new label` (a header row is allowed) → {image index: class index}."""
    p = Path(path)
    if not p.is_file():
        raise DeepRecipeError(f"--relabel {p} does not exist", "give a CSV of rows: index (or path), new label")
    by_path = {name: i for i, name in enumerate(ds.paths or [])}
    by_class = {name: i for i, name in enumerate(ds.classes)}
    fixes: dict[int, int] = {}
    for line_no, row in enumerate(csv.reader(p.read_text(encoding="utf-8").splitlines()), start=1):
        cells = [c.strip() for c in row if c.strip()]
        if not cells:
            continue
        if len(cells) != 2:
            raise DeepRecipeError(f"{p} line {line_no}: expected 2 fields, got {len(cells)}", "write: index_or_path,new_label")
        key, label = cells
        if label not in by_class:
            if line_no == 1 and not key.isdigit():
                continue  # a header row
            raise DeepRecipeError(f"{p} line {line_no}: unknown label {label!r}",
                                  f"use one of: {', '.join(ds.classes[:20])}")
        if key.isdigit() and int(key) < len(ds):
            fixes[int(key)] = by_class[label]
        elif key in by_path:
            fixes[by_path[key]] = by_class[label]
        else:
            raise DeepRecipeError(f"{p} line {line_no}: {key!r} is neither an image index (0..{len(ds) - 1}) nor a path",
                                  "use the index or path column of audit.csv")
    return fixes


def relabel(ds: ImageSet, corrections: str | Path, out: str | Path) -> tuple[str, int]:
    """Write a corrected copy of `ds` as npz; returns (the new data spec, how many labels changed)."""
    fixes = read_corrections(corrections, ds)
    labels = ds.labels.numpy().copy()
    changed = sum(int(labels[i] != new) for i, new in fixes.items())
    for i, new in fixes.items():
        labels[i] = new
    x = ds.images.numpy()
    x = x[:, 0] if x.shape[1] == 1 else np.transpose(x, (0, 2, 3, 1))
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, y=labels, classes=np.array(ds.classes))
    path = Path(out).resolve()
    atomic_write_bytes(path, buf.getvalue())
    return f"npz:{path}", changed
