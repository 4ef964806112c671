"""See the data through the model: a 2-D map (t-SNE, or UMAP when installed) of the learned features.

The PNG is for reading at a glance; the HTML page is an interactive SVG scatter with plain inline
JavaScript (no CDN): points coloured by given label, hover shows the thumbnail and the prediction,
misclassified points drawn as crosses and suspects (from an audit CSV) ringed.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch
from sklearn.manifold import TSNE
from sklearn.model_selection import train_test_split

from ..errors import DeepRecipeError
from ..loaded import LoadedRun, load_run
from ..pages import esc, page, png_data_uri
from ..plots import pyplot, save_png
from ..utils import atomic_write_text
from .audit import load_audit_data

METHODS = ("tsne", "umap")


@dataclass
class Projection:
    xy: np.ndarray            # (N, 2)
    indices: np.ndarray       # image indices in the data spec
    labels: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray    # probability of the predicted class
    suspect: np.ndarray       # bool

    @property
    def misclassified(self) -> np.ndarray:
        return self.predicted != self.labels


@torch.no_grad()
def features_and_logits(loaded: LoadedRun, images: torch.Tensor, batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
    model = loaded.model.eval()
    if not hasattr(model, "features") or not hasattr(model, "head"):
        raise DeepRecipeError(f"model {loaded.cfg.model.name} has no features()/head() API", "use a deeprecipe model")
    feats, logits = [], []
    for i in range(0, images.shape[0], batch_size):
        f = model.features(loaded.normalize(images[i:i + batch_size])).float()
        feats.append(f.flatten(1).cpu())
        logits.append(model.head(f).float().cpu())
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def embed_2d(features: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    if method not in METHODS:
        raise DeepRecipeError(f"--method {method!r} is unknown", f"use one of: {', '.join(METHODS)}")
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise DeepRecipeError("--method umap needs the umap-learn package", "pip install umap-learn, or use --method tsne") from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(features)
    perplexity = float(min(30.0, max(2.0, (len(features) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def read_suspects(path: str | Path | None, top: int) -> set[int]:
    """Image indices of the `top` most suspect rows of an audit.csv."""
    if not path:
        return set()
    p = Path(path)
    if not p.is_file():
        raise DeepRecipeError(f"--suspects {p} does not exist", "give the audit.csv written by `deeprecipe audit`")
    with p.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if rows and "index" not in rows[0]:
        raise DeepRecipeError(f"{p} has no index column", "give the audit.csv written by `deeprecipe audit`")
    return {int(r["index"]) for r in rows[:top]}


def sample_indices(labels: np.ndarray, limit: int | None, seed: int = 0) -> np.ndarray:
    """All images, or a class-stratified random `limit` of them (t-SNE is quadratic-ish)."""
    n = len(labels)
    if not limit or n <= limit:
        return np.arange(n)
    idx, _ = train_test_split(np.arange(n), train_size=limit, stratify=labels, random_state=seed)
    return np.sort(idx)


def project(run: str | Path, spec: str, method: str = "tsne", limit: int | None = 2000,
            suspects: str | Path | None = None, suspect_top: int = 100, seed: int = 0):
    loaded = load_run(run)
    ds = load_audit_data(loaded.classes, spec, loaded.input_shape)
    idx = sample_indices(ds.labels.numpy(), limit, seed)
    images = ds.images[torch.from_numpy(idx)]
    feats, logits = features_and_logits(loaded, images)
    probs = torch.softmax(torch.from_numpy(logits), 1).numpy()
    flagged = read_suspects(suspects, suspect_top)
    proj = Projection(embed_2d(feats, method, seed), idx, ds.labels.numpy()[idx], probs.argmax(1), probs.max(1),
                      np.array([int(i) in flagged for i in idx], dtype=bool))
    return proj, ds, images


# ------------------------------------------------------------------------------------------ outputs
def _palette(n: int) -> list[str]:
    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [matplotlib.colors.to_hex(cmap(i % cmap.N)) for i in range(n)]


def projection_png(proj: Projection, classes: list[str], path: str | Path, title: str) -> None:
    plt = pyplot()
    colors = _palette(len(classes))
    fig, ax = plt.subplots(figsize=(8, 7))
    for c, name in enumerate(classes):
        m = (proj.labels == c) & ~proj.misclassified
        ax.scatter(proj.xy[m, 0], proj.xy[m, 1], s=6, color=colors[c], label=name)
    wrong = proj.misclassified
    ax.scatter(proj.xy[wrong, 0], proj.xy[wrong, 1], s=28, marker="x", c=[colors[c] for c in proj.labels[wrong]],
               label="misclassified (colour = given label)")
    if proj.suspect.any():
        ax.scatter(proj.xy[proj.suspect, 0], proj.xy[proj.suspect, 1], s=70, facecolors="none", edgecolors="black",
                   linewidths=1.2, label="audit suspect")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=2, fontsize=8, loc="best")
    save_png(fig, path, dpi=110)


_SCRIPT = """
const tip=document.getElementById('tip');
document.querySelectorAll('svg .pt').forEach(function(el){
  el.addEventListener('mouseenter',function(ev){
    const d=POINTS[+el.dataset.k];
    tip.innerHTML='<img src="'+THUMBS[d.k]+'"><div>index '+d.i+'</div><div>given <b>'+CLASSES[d.y]+'</b></div>'+
      '<div>predicted <b>'+CLASSES[d.p]+'</b> ('+d.c.toFixed(3)+')</div>'+(d.s?'<div>audit suspect</div>':'');
    tip.style.display='block';tip.style.left=(ev.pageX+14)+'px';tip.style.top=(ev.pageY+14)+'px';});
  el.addEventListener('mouseleave',function(){tip.style.display='none';});
});
"""


def projection_html(proj: Projection, classes: list[str], images: torch.Tensor, title: str, size: int = 720) -> str:
    colors = _palette(len(classes))
    lo, hi = proj.xy.min(0), proj.xy.max(0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    pos = 12 + (proj.xy - lo) / span * (size - 24)
    marks = []
    for k in range(len(proj.indices)):
        x, y = pos[k]
        cls = "pt" + (" wrong" if proj.misclassified[k] else "") + (" suspect" if proj.suspect[k] else "")
        r = 5 if proj.suspect[k] else 3
        marks.append(f"<circle class='{cls}' data-k='{k}' cx='{x:.1f}' cy='{size - y:.1f}' r='{r}' "
                     f"fill='{colors[proj.labels[k]]}'/>")
    points = [{"k": k, "i": int(proj.indices[k]), "y": int(proj.labels[k]), "p": int(proj.predicted[k]),
               "c": round(float(proj.confidence[k]), 4), "s": bool(proj.suspect[k])} for k in range(len(proj.indices))]
    thumbs = [png_data_uri(images[k], 2) for k in range(len(proj.indices))]
    legend = " ".join(f"<span><i style='background:{colors[c]}'></i>{esc(name)}</span>" for c, name in enumerate(classes))
    body = (f"<p>{len(points)} images; {int(proj.misclassified.sum())} misclassified (black outline), "
            f"{int(proj.suspect.sum())} audit suspects (larger, dashed red outline). Hover a point for its image.</p>"
            f"<div class='legend'>{legend}</div>"
            f"<svg id='map' width='{size}' height='{size}' viewBox='0 0 {size} {size}'>{''.join(marks)}</svg>"
            "<div id='tip'></div>")
    style = (".pt{stroke:none;opacity:.85}.pt.wrong{stroke:#000;stroke-width:1.5}.pt.suspect{stroke:#d00;"
             "stroke-width:2;stroke-dasharray:2 1}svg{border:1px solid #ddd}#tip{position:absolute;display:none;"
             "background:#fff;border:1px solid #999;padding:4px;font-size:12px;pointer-events:none}"
             "#tip img{image-rendering:pixelated;width:84px}.legend span{margin-right:10px}.legend i{display:inline-block;"
             "width:10px;height:10px;margin-right:3px}")
    data = (f"const CLASSES={json.dumps(classes)};const POINTS={json.dumps(points)};"
            f"const THUMBS={json.dumps(thumbs)};")
    return page(title, body, style, data + _SCRIPT)


def write_projection(proj: Projection, classes: list[str], images: torch.Tensor, out: str | Path,
                     method: str) -> dict[str, Path]:
    out = Path(out)
    title = f"{method} map of learned features"
    paths = {"png": out / f"projection_{method}.png", "html": out / f"projection_{method}.html"}
    projection_png(proj, classes, paths["png"], title)
    atomic_write_text(paths["html"], projection_html(proj, classes, images, title))
    return paths
