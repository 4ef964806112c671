"""Built-in experiments: a registry, and one runner that writes table, plot and conclusion.

An experiment is a function `(quick: bool, out: Path) -> ExperimentResult`. Its conclusion is computed
from the numbers it measured, never canned, so a user sees whether their machine agrees with the claim.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from ..errors import DeepRecipeError, did_you_mean
from ..utils import atomic_write_text, write_json


@dataclass
class ExperimentResult:
    rows: list[dict]                      # the table: one dict per measured setting
    conclusion: str                       # sentences computed from rows
    plots: list[Path] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)  # the claims tested, by name


def checks_line(checks: dict[str, bool], what: str = "claims") -> str:
    """'k of n claims reproduced here', naming the ones that did not: the honest last line of a conclusion."""
    failed = [k for k, ok in checks.items() if not ok]
    return (f"{len(checks) - len(failed)} of {len(checks)} {what} reproduced here"
            + (f"; not reproduced: {', '.join(failed)}." if failed else "."))


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str
    fn: Callable[[bool, Path], ExperimentResult]


_EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(name: str, claim: str):
    def deco(fn):
        _EXPERIMENTS[name] = Experiment(name, claim, fn)
        return fn
    return deco


def list_experiments() -> list[Experiment]:
    return [_EXPERIMENTS[k] for k in sorted(_EXPERIMENTS)]


def get_experiment(name: str) -> Experiment:
    if name not in _EXPERIMENTS:
        raise DeepRecipeError(f"unknown experiment {name!r}",
                              did_you_mean(name, _EXPERIMENTS, f"choose one of {', '.join(sorted(_EXPERIMENTS))}"))
    return _EXPERIMENTS[name]


def table_csv(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run_experiment(name: str, quick: bool = False, out: str | Path | None = None) -> tuple[ExperimentResult, Path]:
    exp = get_experiment(name)
    out = Path(out) if out else Path("runs") / "experiments" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    result = exp.fn(quick, out)
    atomic_write_text(out / "table.csv", table_csv(result.rows))
    atomic_write_text(out / "conclusion.txt", result.conclusion + "\n")
    write_json(out / "results.json", {"experiment": name, "claim": exp.claim, "quick": quick, "rows": result.rows,
                                      "conclusion": result.conclusion, "checks": result.checks,
                                      "plots": [p.name for p in result.plots]})
    return result, out


def print_result(name: str, result: ExperimentResult, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(stderr=False, width=None if Console().is_terminal else 160)
    table = Table(title=f"experiment {name}")
    keys = list(dict.fromkeys(k for r in result.rows for k in r))
    for k in keys:
        table.add_column(k)
    for r in result.rows:
        table.add_row(*[_fmt(r.get(k)) for k in keys])
    console.print(table)
    console.print(result.conclusion)
    console.print(f"written to {out}: table.csv, results.json, conclusion.txt" +
                  "".join(f", {p.name}" for p in result.plots))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
