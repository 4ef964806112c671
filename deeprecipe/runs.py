"""Many runs at a glance: a sortable table of a folder of runs, and side-by-side comparison."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from . import plots
from .errors import DeepRecipeError
from .utils import atomic_write_bytes, read_jsonl

# column key → (title, higher is better?) ; the sort puts the best first
COLUMNS: dict[str, tuple[str, bool]] = {
    "name": ("run", False), "model": ("model", False), "data": ("data", False), "epochs": ("epochs", True),
    "best_val": ("best val acc", True), "test_acc": ("test acc", True), "seconds": ("time s", False),
}


def _read_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def run_row(run_dir: Path) -> dict[str, Any]:
    """One run's headline numbers (missing ones are None: an unfinished run still shows)."""
    cfg = _read_config(run_dir)
    history = read_jsonl(run_dir / "metrics.jsonl")
    summary_file = run_dir / "summary.json"
    summary = json.loads(summary_file.read_text(encoding="utf-8")) if summary_file.is_file() else {}
    vals = [r["val_acc"] for r in history if r.get("val_acc") is not None]
    return {"name": run_dir.name, "path": str(run_dir), "status": run_status(run_dir),
            "model": cfg.get("model", {}).get("name"),
            "data": cfg.get("data", {}).get("spec"), "epochs": len(history),
            "best_val": max(vals) if vals else None, "test_acc": summary.get("test_acc"),
            "seconds": summary.get("train_seconds", sum(r.get("seconds", 0) for r in history) or None)}


def is_run_dir(path: Path) -> bool:
    """A folder `deeprecipe train` wrote: its config.yaml plus results, or a config.yaml alone (a run stopped
    before its first epoch ended) that is a training config."""
    if not (path / "config.yaml").is_file():
        return False
    if (path / "metrics.jsonl").is_file() or (path / "summary.json").is_file():
        return True
    cfg = _read_config(path)
    return isinstance(cfg, dict) and {"data", "model", "train"} <= set(cfg)


def run_status(run_dir: Path) -> str:
    """finished (it wrote summary.json) or unfinished (stopped, possibly before its first epoch ended)."""
    return "finished" if (run_dir / "summary.json").is_file() else "unfinished"


def unfinished_advice(rows: list[dict[str, Any]]) -> list[str]:
    """One line per run that did not finish: how to carry on with it, or remove it."""
    lines = []
    for r in rows:
        path = r["path"]
        if r["status"] == "finished":
            continue
        if _is_protocol(Path(path).parent):  # a fold of a k-fold/repeated run: the whole run resumes
            path = str(Path(path).parent)
            lines.append(f"{r['name']}: unfinished fold of {path}; continue it with `deeprecipe train --resume {path}`")
        elif _is_protocol(Path(path)):
            lines.append(f"{r['name']}: unfinished k-fold/repeated run; continue it with "
                         f"`deeprecipe train --resume {path}`, or remove it: rm -r {path}")
        elif (Path(path) / "checkpoints" / "last.pt").is_file():
            lines.append(f"{r['name']}: unfinished after {r['epochs']} epoch(s); continue it with "
                         f"`deeprecipe train --resume {path}`, or remove it: rm -r {path}")
        else:  # no last.pt to resume from: the same config, in the same folder, starts it again
            lines.append(f"{r['name']}: unfinished, stopped before its first epoch ended (config.yaml only); start it again with "
                         f"`deeprecipe train --config {path}/config.yaml --out {path}`, or remove it: rm -r {path}")
    return lines


def _is_protocol(run_dir: Path) -> bool:
    """A k-fold or repeated-split run: its sub-runs are folds, and --resume carries on fold by fold."""
    cfg = _read_config(run_dir)
    data = cfg.get("data") if isinstance(cfg, dict) else None
    return isinstance(data, dict) and max(data.get("folds") or 0, data.get("repeats") or 0) >= 2


def find_runs(folder: str | Path = "runs") -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DeepRecipeError(f"{folder} is not a folder", "give the folder that holds your runs (default runs/)")
    if is_run_dir(folder):
        return [folder]
    return sorted(p.parent for p in folder.rglob("config.yaml") if is_run_dir(p.parent))


def list_runs(folder: str | Path = "runs", sort: str = "test_acc") -> list[dict[str, Any]]:
    """Rows for every run under FOLDER, best first by SORT (any key of COLUMNS)."""
    if sort not in COLUMNS:
        raise DeepRecipeError(f"--sort {sort!r} is not a column", f"choose one of {', '.join(COLUMNS)}")
    rows = [run_row(p) for p in find_runs(folder)]
    descending = COLUMNS[sort][1]
    present = [r for r in rows if r[sort] is not None]
    present.sort(key=lambda r: r[sort], reverse=descending)
    return present + [r for r in rows if r[sort] is None]


def runs_table(rows: list[dict[str, Any]], title: str = "runs"):
    """A rich Table of list_runs rows."""
    table = Table(title=title)
    for key, (heading, _) in COLUMNS.items():
        table.add_column(heading, justify="left" if key in ("name", "model", "data") else "right", overflow="fold")
    for r in rows:
        cells = [_cell(k, r[k]) for k in COLUMNS]
        if r.get("status", "finished") != "finished":
            cells[0] += f" ({r['status']})"
        table.add_row(*cells)
    return table


def differences_table(result: dict[str, Any]):
    """A rich Table of compare_runs' config differences: one row per key, one column per run."""
    table = Table(title="config differences")
    table.add_column("key")
    for name in result["names"]:
        table.add_column(name, overflow="fold")
    for key, values in result["differences"].items():
        table.add_row(key, *(str(v) for v in values))
    return table


def _cell(key: str, v) -> str:
    if v is None:
        return "–"
    if key == "seconds":
        return f"{v:.1f}"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# ------------------------------------------------------------------------------------------ compare
def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(run_dirs: list[Path]) -> dict[str, list[Any]]:
    """Config keys whose values differ between runs: key → one value per run (None where absent)."""
    flat = [_flatten(_read_config(p)) for p in run_dirs]
    keys = sorted(set().union(*flat))
    return {k: [f.get(k) for f in flat] for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flat}) > 1}


def compare_runs(runs: list[str | Path], out: str | Path | None = None) -> dict[str, Any]:
    """Overlay the runs' curves in one PNG and list their config differences."""
    dirs = [Path(r) for r in runs]
    if len(dirs) < 2:
        raise DeepRecipeError("compare needs at least two runs", "e.g. deeprecipe runs compare runs/a runs/b")
    for d in dirs:
        if not is_run_dir(d):
            raise DeepRecipeError(f"{d} is not a run folder", "give folders written by `deeprecipe train`")
    names = _unique_names(dirs)
    histories = {n: read_jsonl(d / "metrics.jsonl") for n, d in zip(names, dirs)}
    png_path = Path(out) if out else dirs[0].parent / "compare.png"
    atomic_write_bytes(png_path, plots.curves_png(histories))
    return {"png": str(png_path), "runs": [run_row(d) for d in dirs], "names": names,
            "differences": config_differences(dirs)}


def _unique_names(dirs: list[Path]) -> list[str]:
    names = [d.name for d in dirs]
    if len(set(names)) == len(names):
        return names
    return [str(d) for d in dirs]
