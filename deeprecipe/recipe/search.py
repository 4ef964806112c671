"""`deeprecipe search`: an Optuna study over any config fields, coarse then fine.

The space lives under `search.space` as `dotted.key: {kind: args}`:

    search:
      space:
        optim.lr: {log: [1e-4, 1e-1]}       # log-uniform float
        model.dropout: {uniform: [0, 0.5]}  # uniform float
        train.batch_size: {int: [32, 256]}  # integer (add `log: true` via {int: [32, 256], log: true})
        optim.name: {choice: [sgd, adamw]}  # categorical
        optim.weight_decay: {log: [1e-5, 1e-2], zero: true}  # log-uniform, or 0 as one more decade

Coarse stage: up to `search.trials` short runs (`search.epochs`), or fewer when `search.budget` epochs are
spent first; each reports val accuracy per epoch so the pruner (ASHA, Hyperband or median) stops hopeless
ones early — a pruned trial costs only the epochs it ran. Points come from `search.sampler` (random, TPE or
a grid). Refine stage: `search.refine_trials` longer runs (`search.refine_epochs`) in a box around the best
coarse trial, plus whatever `extra_refine` adds given the coarse winner's diagnosis. Storage: a SQLite file in
the run folder, or any SQLAlchemy URL; workers that share a URL and study name share the study.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
import yaml
from rich.console import Console
from rich.table import Table

from ..config import Config, build_config
from ..errors import DeepRecipeError
from ..plots import pyplot, save_png
from ..session import Session
from ..utils import atomic_write_text, note, write_json
from .baseline import BASELINE, CORRECT, choose, configured_values
from .samplers import make_pruner, make_sampler

KINDS = ("log", "uniform", "int", "choice")


@dataclass
class Param:
    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: list | None = None
    log: bool = False
    zero: bool = False  # a log range that also offers 0: sampled on [low / 10, high], below low meaning 0

    def suggest(self, trial) -> Any:
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, self.choices)
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.log)
        if self.zero:  # one more decade below the range stands for 0, as likely as any decade of it
            raw = trial.suggest_float(self.key, self.low / 10, self.high, log=True)
            return 0.0 if raw < self.low else raw
        return trial.suggest_float(self.key, self.low, self.high, log=self.kind == "log")

    def raw(self, value: Any) -> Any:
        """The value Optuna records for `value` (to enqueue a known point)."""
        return self.low / 10 if self.zero and value == 0 else value

    def around(self, best: Any, shrink: float = 0.25) -> "Param":
        """A narrower range centred on `best` (the refine stage); choices are fixed to the best one, and so is
        a zero-able value that was 0."""
        if self.kind == "choice" or (self.zero and best == 0):
            return Param(self.key, "choice", choices=[best])
        if self.kind == "log" or self.log:
            span = (math.log(self.high) - math.log(self.low)) * shrink / 2
            low, high = max(self.low, best * math.exp(-span)), min(self.high, best * math.exp(span))
        else:
            span = (self.high - self.low) * shrink / 2
            low, high = max(self.low, best - span), min(self.high, best + span)
        if self.kind == "int":
            low, high = int(math.floor(low)), int(math.ceil(high))
        return Param(self.key, self.kind, low, high, log=self.log)


def _bad(key: str, problem: str) -> DeepRecipeError:
    return DeepRecipeError(f"search.space.{key}: {problem}",
                           "write e.g. optim.lr: {log: [1e-4, 1e-1]}, model.dropout: {uniform: [0, 0.5]}, "
                           "train.batch_size: {int: [32, 256]}, optim.name: {choice: [sgd, adamw]} or "
                           "optim.weight_decay: {log: [1e-5, 1e-2], zero: true}")


def _number(value: Any) -> float | None:
    """A bound as a float; YAML reads `1e-4` (no dot) as a string, so strings that parse are accepted."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def parse_space(space: dict[str, Any], base: Config) -> list[Param]:
    """Validate the `search.space` mapping into Params; every problem names its key."""
    if not space:
        raise DeepRecipeError("search.space is empty", "add ranges, e.g. --set 'search.space={optim.lr: {log: [1e-4, 1e-1]}}'")
    defaults = base.to_dict()
    params = []
    for key, spec in space.items():
        parts = str(key).split(".")
        if len(parts) != 2 or parts[0] not in defaults or parts[0] == "search":
            raise _bad(key, "must be section.field of a config section (data, model, optim, schedule, regularize, train)")
        if parts[0] != "model" and parts[1] not in defaults[parts[0]]:
            raise _bad(key, f"{parts[0]} has no field {parts[1]!r}")
        if not isinstance(spec, dict) or not (set(spec) & set(KINDS)):
            raise _bad(key, f"needs one of {', '.join(KINDS)}")
        kinds = [k for k in spec if k in KINDS]
        extra = [k for k in spec if k not in KINDS and k not in ("log", "zero")]
        if len(kinds) != 1 or extra:
            raise _bad(key, f"give exactly one of {', '.join(KINDS)} (got {', '.join(map(str, spec))})")
        kind, args = kinds[0], spec[kinds[0]]
        if kind == "choice":
            if not isinstance(args, list) or not args:
                raise _bad(key, "choice needs a non-empty list")
            params.append(Param(key, kind, choices=args))
            continue
        bounds = [_number(a) for a in args] if isinstance(args, list) and len(args) == 2 else [None]
        if None in bounds:
            raise _bad(key, f"{kind} needs [low, high] numbers (got {args!r})")
        low, high = bounds
        if not low < high:
            raise _bad(key, f"low {low:g} must be below high {high:g}")
        if (kind == "log" or spec.get("log")) and low <= 0:
            raise _bad(key, "a log range needs low > 0")
        if spec.get("zero") not in (None, True, False) or (spec.get("zero") and kind != "log"):
            raise _bad(key, "zero: true goes with a log range (it offers 0 besides the range)")
        params.append(Param(key, kind, low, high, log=bool(spec.get("log", False)) and kind == "int",
                            zero=bool(spec.get("zero"))))
    for p in params:  # every choice and both bounds must also pass the config's own validation
        probes = p.choices if p.kind == "choice" else [p.low, p.high] + ([0.0] if p.zero else [])
        for probe in probes:
            apply_params(base, {p.key: int(probe) if p.kind == "int" else probe})
    return params


def apply_params(base: Config, values: dict[str, Any]) -> Config:
    """The config with `values` set; a list field (data.augment) takes its choices as YAML lists in a string
    (Optuna's categorical values are plain scalars)."""
    data = base.to_dict()
    for key, value in values.items():
        section, name = key.split(".")
        if isinstance(data[section].get(name), list) and isinstance(value, str):
            value = yaml.safe_load(value)
        data[section][name] = value
    return build_config(data, source="search.space")


# ------------------------------------------------------------------------------------------ the study
def objective_for(session: Session, params: list[Param], epochs: int, fixed: dict[str, Any] | None = None):
    """An Optuna objective: one short training run, reporting val accuracy after every epoch."""

    def objective(trial) -> float:
        if trial.user_attrs.get(BASELINE):  # the configured settings, as they are
            values = configured_values(session.cfg, [p.key for p in params] + list(fixed or {}))
        else:
            values = {p.key: p.suggest(trial) for p in params}
            values.update(fixed or {})
        trial.set_user_attr("values", values)  # what was trained (a zero-able range records its raw draw)
        cfg = apply_params(session.cfg, values)
        cfg.train.epochs = epochs
        trial_session = Session.create(cfg, data=session.data)
        trainer = trial_session.make_trainer(None, show_progress=False)

        best_epoch = {"val_acc": -1.0}

        def report(tr, row):
            trial.report(row.get("val_acc", 0.0), row["epoch"])
            if row.get("val_acc", -1.0) > best_epoch["val_acc"]:  # the epoch the trial's value comes from
                # Right/wrong per validation image, as a 0/1 string: the guard's paired test.
                right = "".join("1" if c else "0" for c in tr.last_correct.tolist())
                best_epoch.update(val_acc=row["val_acc"], correct=right)
            # A finished trial is kept (its epochs are spent); the baseline runs to the end, as the yardstick.
            if row["epoch"] < epochs and not trial.user_attrs.get(BASELINE) and trial.should_prune():
                raise optuna.TrialPruned(f"val_acc {row.get('val_acc', 0.0):.4f} after epoch {row['epoch']}")

        trainer.hooks["on_epoch_end"].append(report)
        try:
            history = trainer.fit().history
        except DeepRecipeError as err:  # divergence: a bad region of the space, not a crash of the search
            trial.set_user_attr("error", err.message)
            return 0.0
        trial.set_user_attr("diagnosis", trial_session.diagnose(history)["verdict"])
        trial.set_user_attr(CORRECT, best_epoch.get("correct", ""))
        return max(r.get("val_acc", 0.0) for r in history)

    return objective


def open_study(storage: str | None, name: str, epochs: int, pruner: str, sampler=None):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    last_error: Exception | None = None
    for attempt in range(6):
        try:
            return optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                       pruner=make_pruner(pruner, epochs), sampler=sampler)
        except Exception as err:  # bad URL, missing driver, unreachable server — or a race, below
            last_error = err
            # Workers started together on an empty database race to create Optuna's tables and the study;
            # the loser sees a unique-key violation and simply finds everything there on the next try.
            if "unique" not in str(err).lower() and "already exists" not in str(err).lower():
                break
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
    first_line = str(last_error).splitlines()[0] if str(last_error) else type(last_error).__name__
    raise DeepRecipeError(f"cannot open study {name!r} at {storage}: {first_line}",
                          "give a SQLAlchemy URL such as sqlite:///search.db or postgresql+psycopg://user@host/db")


def epochs_spent(study) -> int:
    """Epochs trained by the study's trials so far (a pruned trial counts the epochs it ran)."""
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def optimize_shared(study, objective, total: int, budget: int | None = None) -> None:
    """Run trials until the STUDY holds `total` of them, however many workers share it.

    Several processes (on one or many machines) may call this on one study in a shared database. Optuna
    numbers trials atomically in the storage, so a trial numbered past the budget is a worker arriving late:
    it is marked pruned at once without training, and the worker stops. With a `budget` in epochs, no trial
    starts once the study's trials have trained that many epochs.
    """

    def guarded(trial):
        if trial.number >= total or (budget is not None and epochs_spent(trial.study) >= budget):
            trial.set_user_attr("over_budget", True)
            trial.study.stop()
            raise optuna.TrialPruned("the study's trial (or epoch) budget is already used")
        return objective(trial)

    waiting = optuna.trial.TrialState.WAITING  # enqueued, not yet run: they are part of this budget
    done = sum(1 for t in study.get_trials(deepcopy=False) if t.state != waiting and not t.user_attrs.get("over_budget"))
    if done < total:
        study.optimize(guarded, n_trials=total - done)


@dataclass
class SearchResult:
    best_params: dict[str, Any]
    best_value: float
    best_config: Config
    trials: list[dict]
    stages: dict[str, int]
    refine_added: list[str] = field(default_factory=list)  # keys the refine stage added to the space
    baseline_note: str | None = None  # the guard's decision between the best trial and the configured one
    kept_configured: bool = False


def run_search(session: Session, run_dir: Path, trials: int | None = None, storage: str | None = None,
               study: str | None = None, enqueue: list[dict[str, Any]] | None = None,
               extra_refine: Callable[[str | None], tuple[dict, dict]] | None = None,
               baseline: bool = False, persist: bool = True) -> SearchResult:
    """Coarse stage, then refine stage; writes trials.json, search.png and best.yaml into run_dir.

    `extra_refine(verdict)` gets the diagnosis of the coarse winner's curves and returns more space for the
    refine stage (and the values its first trial, the coarse winner, keeps for them). With `baseline`, each
    stage also trains the configured settings (never pruned), and the result keeps them unless the best trial
    beats them beyond the validation set's noise (recipe/baseline.py). Without a storage URL the study lives in
    run_dir/search.db, or with `persist=False` in memory (one process, recorded in trials.json: the recipe's way,
    which spares a disk sync per Optuna write — 2 of 12 s of a recipe on a small set)."""
    scfg = session.cfg.search
    params = parse_space(scfg.space, session.cfg)
    if not len(session.data.splits["val"]):
        raise DeepRecipeError("search needs a validation split", "set data.val_fraction above 0")
    run_dir.mkdir(parents=True, exist_ok=True)
    # A study of one's own is seeded by train.seed (reproducible); workers sharing one draw their own points.
    seed = None if (storage or scfg.storage) else session.cfg.train.seed
    storage = storage or scfg.storage or (f"sqlite:///{(run_dir / 'search.db').resolve()}" if persist else None)
    name = study or scfg.study or "deeprecipe"
    total = trials or scfg.trials
    coarse = open_study(storage, name, scfg.epochs, scfg.pruner, make_sampler(scfg.sampler, params, total, seed))
    if baseline:
        coarse.enqueue_trial({}, user_attrs={BASELINE: True})
    for values in enqueue or []:
        coarse.enqueue_trial({p.key: p.raw(values[p.key]) for p in params if p.key in values}, skip_if_exists=True)
    optimize_shared(coarse, objective_for(session, params, scfg.epochs), total, scfg.budget)
    coarse_rows, refine_rows = trial_rows(coarse, "coarse"), []  # each study read once, after it finished
    best_study, stages, added_keys = coarse, {"coarse": len(coarse_rows)}, []
    if scfg.refine_trials:
        best = _best_trial(coarse)
        values = _values(best)
        narrow = [p.around(values[p.key]) if p.key in values else p for p in params]
        fixed = {p.key: p.choices[0] for p in narrow if p.kind == "choice"}
        narrow = [p for p in narrow if p.kind != "choice"]
        start = {k: v for k, v in values.items() if k not in fixed}
        if extra_refine is not None:
            extra, extra_start = extra_refine(best.user_attrs.get("diagnosis"))
            added = [p for p in parse_space(extra, session.cfg) if p.key not in values] if extra else []
            narrow += added
            start.update({p.key: p.raw(extra_start[p.key]) for p in added if p.key in extra_start})
            added_keys = [p.key for p in added]
        epochs = scfg.refine_epochs or 2 * scfg.epochs
        refine = open_study(storage, f"{name}-refine", epochs, scfg.pruner,
                            make_sampler(scfg.sampler, narrow, scfg.refine_trials, seed))
        from_baseline = bool(best.user_attrs.get(BASELINE))
        refine.enqueue_trial(start, skip_if_exists=True, user_attrs={BASELINE: True} if from_baseline else None)
        extra_trial = baseline and not from_baseline  # the yardstick at the refine stage's length too
        if extra_trial:
            refine.enqueue_trial({}, user_attrs={BASELINE: True})
        optimize_shared(refine, objective_for(session, narrow, epochs, fixed), scfg.refine_trials + extra_trial)
        refine_rows = trial_rows(refine, "refine")
        best_study, stages["refine"] = refine, len(refine_rows)
    best = _best_trial(best_study)
    best, guard, kept = choose(best_study, best, len(session.data.splits["val"]))
    best_params = _values(best)
    best_cfg = apply_params(session.cfg, best_params)
    rows = coarse_rows + refine_rows
    write_json(run_dir / "trials.json", rows)
    atomic_write_text(run_dir / "best.yaml", yaml.safe_dump(best_cfg.to_dict(), sort_keys=False))
    plot_best_so_far(rows, run_dir / "search.png")
    return SearchResult(best_params, float(best.value), best_cfg, rows, stages, added_keys, guard, kept)


def _values(trial) -> dict[str, Any]:
    """The config values a trial trained with (its fixed ones included; Optuna's params hold raw draws)."""
    return dict(trial.user_attrs.get("values", trial.params))


def _best_trial(study):
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not done:
        raise DeepRecipeError(f"study {study.study_name!r} has no completed trial",
                              "raise search.trials, or use search.pruner=none")
    return max(done, key=lambda t: t.value)


def trial_rows(study, stage: str) -> list[dict]:
    rows = []
    for t in study.trials:
        if t.user_attrs.get("over_budget"):
            continue  # a late worker's placeholder, never trained
        value = t.value if t.value is not None else (max(t.intermediate_values.values()) if t.intermediate_values else None)
        rows.append({"stage": stage, "number": t.number, "state": t.state.name.lower(), "value": value,
                     "epochs": len(t.intermediate_values), "params": _values(t),
                     "error": t.user_attrs.get("error"), "diagnosis": t.user_attrs.get("diagnosis"),
                     "configured": bool(t.user_attrs.get(BASELINE))})
    return rows


# ------------------------------------------------------------------------------------------ output
def print_trials(rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r["params"]})
    table = Table(title="search trials (value = best val_acc)")
    for col in ["stage", "#", "state", "value", "epochs", "diagnosis", *keys]:
        table.add_column(col)
    best = max((r["value"] for r in rows if r["state"] == "complete" and r["value"] is not None), default=None)
    for r in rows:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        if best is not None and r["value"] == best and r["state"] == "complete":
            value = f"[bold green]{value}[/]"
        table.add_row(r["stage"], str(r["number"]), r["state"], value, str(r["epochs"]), r.get("diagnosis") or "",
                      *[_fmt(r["params"].get(k)) for k in keys])
    Console().print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "" if v is None else str(v)


def plot_best_so_far(rows: list[dict], path: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    best, xs, ys = -math.inf, [], []
    for i, r in enumerate(rows):
        if r["value"] is not None:
            colour = {"complete": "C0", "pruned": "0.6"}.get(r["state"], "C3")
            marker = "o" if r["stage"] == "coarse" else "s"
            ax.scatter(i, r["value"], color=colour, marker=marker, s=20, zorder=3)
            if r["state"] == "complete":
                best = max(best, r["value"])
        xs.append(i)
        ys.append(best if best > -math.inf else math.nan)
    ax.step(xs, ys, where="post", color="C2", label="best so far")
    ax.set_xlabel("trial (coarse ●, refine ■; grey = pruned)")
    ax.set_ylabel("val accuracy")
    ax.set_title("hyperparameter search")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return save_png(fig, path)


def report_best(result: SearchResult, run_dir: Path) -> None:
    note(f"best val_acc {result.best_value:.4f} with " + ", ".join(f"{k}={_fmt(v)}" for k, v in result.best_params.items()))
    note(f"best config: {run_dir / 'best.yaml'} (train it with `deeprecipe train --config {run_dir / 'best.yaml'}`)")
