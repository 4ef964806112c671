"""`deeprecipe recipe`: the six steps end to end, stopping with advice at the first one that fails.

1 initial loss (and the data and layer checks)  2 overfit a small sample  3 lr range test
4 coarse search (short runs, pruned) of the lr around the suggestion × weight decay  5 refine around the best
(adding the regularisation knobs when its curves read overfitting), then train the best config for the full
`train.epochs` with its schedule  6 diagnose the final curves.
Everything lands in one run folder, summarised by a self-contained `recipe.html`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import pages
from ..api import train
from ..config import Config, build_config
from ..plots import curves_png
from ..session import Session, build_model, new_run_dir
from ..train.diagnose import PROBLEMS
from ..utils import atomic_write_bytes, atomic_write_text, note, read_jsonl, write_json
from .lr_find import plot_lr_find, run_lr_find
from .lr_methods import plot_short_runs, run_short_runs
from .sanity import Check, check_overfit, run_doctor
from .search import run_search
from .space import coarse_space, refine_additions

STEP_NAMES = ["1. initial loss", "2. overfit a small sample", "3. learning rate",
              "4. coarse search", "5. refine and train longer", "6. diagnose the curves"]


@dataclass
class Step:
    name: str
    status: str = "skipped"                      # pass | fail | skipped
    lines: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    html: str = ""

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "lines": self.lines, "advice": self.advice}


def _checks_html(checks: list[Check]) -> str:
    return pages.table(["check", "result", "measured", "fix"],
                      [[c.name, c.status, c.measured, c.fix]
                       for c in checks])


def step_initial(session: Session) -> tuple[Step, list[Check]]:
    checks = run_doctor(session, include_overfit=False)
    failed = [c for c in checks if c.passed is False]
    step = Step(STEP_NAMES[0], "fail" if failed else "pass", [f"{c.name}: {c.measured}" for c in checks],
                [c.fix for c in failed], _checks_html(checks))
    return step, checks


def step_overfit(session: Session) -> Step:
    torch.manual_seed(session.cfg.train.seed)
    model = build_model(session.cfg, len(session.data.classes), session.data.input_shape).to(session.device)
    r = session.cfg.recipe
    check = check_overfit(session, model, r.overfit_samples, r.overfit_steps)
    return Step(STEP_NAMES[1], "pass" if check.passed else "fail", [check.measured],
                [check.fix] if not check.passed else [], _checks_html([check]))


def step_lr_find(session: Session, run_dir: Path) -> tuple[Step, float | None]:
    if session.cfg.recipe.lr_method == "short-runs":
        return step_short_runs(session, run_dir)
    result = run_lr_find(session, steps=session.cfg.recipe.lr_find_steps)
    png = plot_lr_find(result, run_dir / "lr_find.png")
    write_json(run_dir / "lr_find.json", result.to_dict())
    if result.suggestion is None:
        return Step(STEP_NAMES[2], "fail", [f"the range test ran only {len(result.lrs)} steps before diverging"],
                    ["check the data and model with `deeprecipe doctor`", "set regularize.clip_norm=1"]), None
    lines = [f"suggested lr {result.suggestion:.3g} (loss minimum at {result.min_loss_lr:.3g}"
             + (f", steepest fall at {result.steepest_lr:.3g}" if result.steepest_lr else "") + ")"]
    return Step(STEP_NAMES[2], "pass", lines, html=pages.img_tag(png, "lr range test")), result.suggestion


def step_short_runs(session: Session, run_dir: Path) -> tuple[Step, float | None]:
    runs = run_short_runs(session)
    png = plot_short_runs(runs, run_dir / "lr_find.png")
    write_json(run_dir / "lr_find.json", runs.to_dict())
    if runs.suggestion is None:
        return Step(STEP_NAMES[2], "fail", ["every candidate rate diverged in its short run"],
                    ["check the data and model with `deeprecipe doctor`", "set regularize.clip_norm=1"]), None
    lines = [f"suggested lr {runs.suggestion:.3g} (short runs of {runs.steps} steps at {len(runs.lrs)} rates "
             f"{max(runs.lrs):.2g}…{min(runs.lrs):.2g}, lowest final loss {min(runs.finals):.3g})"]
    return Step(STEP_NAMES[2], "pass", lines, html=pages.img_tag(png, "short runs")), runs.suggestion


def search_config(cfg: Config, suggestion: float) -> Config:
    """The search section the recipe runs: the user's space if given, else the lr around the suggestion ×
    weight decay (recipe/space.py); the sampler and pruner are search.sampler and search.pruner."""
    r = cfg.recipe
    data = cfg.to_dict()
    space = dict(cfg.search.space) or coarse_space(cfg, suggestion)
    data["search"].update(space=space, trials=r.trials, epochs=r.search_epochs, budget=r.search_budget,
                          refine_trials=r.refine_trials, refine_epochs=r.refine_epochs)
    return build_config(data, source="recipe")


def step_search(session: Session, suggestion: float, run_dir: Path):
    cfg = search_config(session.cfg, suggestion)
    search_session = Session.create(cfg, data=session.data)
    wd = session.cfg.optim.weight_decay
    starts = [{"optim.lr": suggestion, "optim.weight_decay": wd}]
    # The regularisation knobs join the refine stage only when the coarse winner's curves read overfitting.
    extra = None if session.cfg.search.space else (lambda verdict: refine_additions(verdict, session.cfg))
    # The configured settings are a trial of each stage, kept unless beaten beyond the validation noise.
    result = run_search(search_session, run_dir / "search", storage=None, study="recipe", enqueue=starts,
                        extra_refine=extra, baseline=session.cfg.optim.lr > 0, persist=False)
    coarse = [t for t in result.trials if t["stage"] == "coarse"]
    refine = [t for t in result.trials if t["stage"] == "refine"]
    rows = [[t["stage"], t["number"], t["state"], "" if t["value"] is None else f"{t['value']:.4f}",
             t.get("diagnosis") or "",
             ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())]
            for t in result.trials]
    table = pages.table(["stage", "#", "state", "val_acc", "diagnosis", "params"], rows)
    img = pages.img_tag(run_dir / "search" / "search.png", "best so far")
    best_coarse = max((t["value"] for t in coarse if t["state"] == "complete"), default=None)
    pruned = sum(t["state"] == "pruned" for t in coarse)
    s4 = Step(STEP_NAMES[3], "pass", [f"{len(coarse)} trials of up to {cfg.search.epochs} epoch(s) ({pruned} pruned, "
                                     f"{sum(t['epochs'] for t in coarse)} epochs in all), {cfg.search.sampler} "
                                     f"sampler, {cfg.search.pruner} pruner, space {cfg.search.space}; "
                                     f"best val_acc {best_coarse}"], html=table + img)
    return s4, result, refine


def final_epochs(cfg: Config) -> int:
    """The final run's length: recipe.final_epochs, else twice train.epochs — the lectures' step 5 trains the
    chosen settings longer than the runs that compared them (measured in docs/recipe.md)."""
    return cfg.recipe.final_epochs or 2 * cfg.train.epochs


def step_final(result, refine: list[dict], run_dir: Path) -> tuple[Step, dict]:
    final_cfg = result.best_config.model_copy(deep=True)
    final_cfg.train.epochs = final_epochs(final_cfg)
    summary = train(final_cfg, out=run_dir / "final", show_progress=False)
    lines = [f"refine: {len(refine)} trial(s) around the best coarse region" if refine else "refine: skipped (recipe.refine_trials=0)",
             ("the coarse winner's curves read overfitting: refine also searched " + ", ".join(result.refine_added))
             if result.refine_added else "refine added no regularisation knobs (the coarse winner did not read "
                                         "overfitting, or search.space was given)",
             *([result.baseline_note] if result.baseline_note else []),
             "best params " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in result.best_params.items()),
             f"final run: {summary['epochs_run']} epochs, schedule {final_cfg.schedule.name}, "
             f"test_acc {summary['test_acc']:.4f} on {summary['evaluated_on']}"]
    atomic_write_text(run_dir / "best.yaml", final_cfg.to_yaml())
    return Step(STEP_NAMES[4], "pass", lines, html=pages.bullet_list(lines)), summary


LR_APART = 3.0  # the final lr this far from step 3's suggestion is another rate, not the suggestion's noise


def lr_cross_check(verdict: str, final_lr: float, suggestion: float | None) -> list[str]:
    """Advice tying the final run's verdict to step 3: the search keeps the configured rate unless a trial beats
    it beyond the validation noise, so on a small split the final run may use a rate step 3 advised against."""
    if not suggestion or final_lr <= 0:
        return []
    if verdict == "unstable" and final_lr >= LR_APART * suggestion:
        return [f"the final run's lr {final_lr:.3g} is {final_lr / suggestion:.0f}× step 3's suggestion "
                f"{suggestion:.3g} (the search could not tell them apart): try --set optim.lr={suggestion:.2g}"]
    if verdict in ("underfitting", "not converged") and final_lr * LR_APART <= suggestion:
        return [f"the final run's lr {final_lr:.3g} is {suggestion / final_lr:.0f}× under step 3's suggestion "
                f"{suggestion:.3g} (the search could not tell them apart): try --set optim.lr={suggestion:.2g}"]
    return []


def step_diagnose(run_dir: Path, summary: dict, final_lr: float = 0.0, suggestion: float | None = None) -> Step:
    """The diagnosis the final run stored in its summary.json (one function for every page that shows one),
    with step 3's rate as the first thing to try where the verdict points at the rate the search kept."""
    history = read_jsonl(run_dir / "final" / "metrics.jsonl")
    diag = summary.get("diagnosis") or {"verdict": "not available", "evidence": [], "advice": []}
    advice = lr_cross_check(diag["verdict"], final_lr, suggestion) + diag["advice"]
    png = run_dir / "curves.png"
    atomic_write_bytes(png, curves_png({"final run": history}))
    inner = (f"<p>verdict: <b>{diag['verdict']}</b></p>" + pages.bullet_list(diag["evidence"]) + "<p>what to try:</p>"
             + pages.bullet_list(advice) + pages.img_tag(png, "curves"))
    status = "fail" if diag["verdict"] in PROBLEMS and diag["verdict"] != "not converged" else "pass"
    return Step(STEP_NAMES[5], status, [f"verdict {diag['verdict']}"] + diag["evidence"], advice, inner)


def run_recipe(cfg: Config, out: str | Path | None = None, show_progress: bool = True) -> dict:
    """All six steps; returns {"steps", "test_acc", "run_dir", "stopped_at"} and writes recipe.html/json."""
    run_dir = new_run_dir(cfg, out)
    atomic_write_text(run_dir / "config.yaml", cfg.to_yaml())
    session = Session.create(cfg)
    steps: list[Step] = []
    outcome = {"run_dir": str(run_dir), "test_acc": None, "stopped_at": None}

    def done(step: Step) -> bool:
        steps.append(step)
        if show_progress:
            note(f"{step.name}: {step.status} — " + "; ".join(step.lines[:2]))
        return step.status == "fail" and step.name in STEP_NAMES[:3]

    stop = done(step_initial(session)[0]) or done(step_overfit(session))
    suggestion = None
    if not stop:
        s3, suggestion = step_lr_find(session, run_dir)
        stop = done(s3)
    if not stop:
        s4, result, refine = step_search(session, suggestion, run_dir)
        done(s4)
        s5, summary = step_final(result, refine, run_dir)
        done(s5)
        outcome["test_acc"] = summary["test_acc"]
        done(step_diagnose(run_dir, summary, result.best_config.optim.lr, suggestion))
    else:
        outcome["stopped_at"] = steps[-1].name
    steps += [Step(n, "skipped", ["not run: an earlier step failed"]) for n in STEP_NAMES[len(steps):]]
    outcome["steps"] = [s.to_dict() for s in steps]
    write_json(run_dir / "recipe.json", outcome)
    atomic_write_text(run_dir / "recipe.html", render(cfg, steps, outcome))
    return outcome


def render(cfg: Config, steps: list[Step], outcome: dict) -> str:
    intro = (f"data {cfg.data.spec}, model {cfg.model.name}. " +
             (f"Final test accuracy {outcome['test_acc']:.4f}." if outcome["test_acc"] is not None
              else f"Stopped at {outcome['stopped_at']}: fix it and run again."))
    body = f"<p>{pages.esc(intro)}</p>"
    for s in steps:
        inner = s.html or pages.bullet_list(s.lines)
        if s.advice and s.status == "fail":
            inner += "<p>what to change:</p>" + pages.bullet_list(s.advice)
        status = f'<span class="{s.status if s.status in ("pass", "fail") else "skip"}">{pages.esc(s.status)}</span>'
        body += f"<h2>{pages.esc(s.name)} — {status}</h2>{inner}"
    return pages.page("deeprecipe recipe", body)
