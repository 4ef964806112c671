"""Command line: parse, call the API, print. No logic of its own.

Every DeepRecipeError (and every config/validation problem) ends as one line on stderr and exit
code 2; `--debug` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from .errors import DeepRecipeError

COMMANDS: dict[str, tuple[Callable, Callable | None, str]] = {}


def command(name: str, help: str, setup: Callable[[argparse.ArgumentParser], None] | None = None):
    """Register a subcommand: `setup(parser)` adds its arguments, the decorated function runs it."""
    def deco(fn):
        COMMANDS[name] = (fn, setup, help)
        return fn
    return deco


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as a DeepRecipeError (one line, exit 2) like everything else."""

    def error(self, message: str):
        raise DeepRecipeError(message, f"see `{self.prog} --help`")


def add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with config sections (data, model, optim, …)")
    p.add_argument("--data", help="data spec: builtin:mnist5k, builtin:digits, a folder, npz:PATH, …")
    p.add_argument("--model", help="model name (see `deeprecipe models`)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None)
    p.add_argument("--out", help="run folder (default runs/<timestamp>-<model>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override any config key, e.g. --set optim.name=sgd (repeatable)")


def train_overrides(args) -> list[str]:
    """The common flags, written as --set overrides so one path validates everything."""
    flags = {"data.spec": args.data, "model.name": args.model, "train.epochs": args.epochs, "optim.lr": args.lr,
             "train.batch_size": args.batch_size, "train.seed": args.seed, "train.deterministic": args.deterministic}
    return [f"{k}={json.dumps(v) if isinstance(v, str) else v}" for k, v in flags.items() if v is not None] + list(args.overrides)


def config_from_args(args):
    from .config import resolve_config
    return resolve_config(args.config, train_overrides(args))


# ---------------------------------------------------------------------------------------------- commands
# Each command is one self-contained block: a setup function for its arguments and a runner.
# Blocks are grouped by area so that work on different areas touches different parts of this file.

# ==== training and using runs ====================================================================
def _setup_train(p):
    add_train_options(p)
    p.add_argument("--resume", metavar="RUN", help="continue RUN from checkpoints/last.pt")


@command("train", "train a model (defaults: builtin:mnist5k, convnet)", _setup_train)
def cmd_train(args) -> int:
    from .api import train
    from .train.trainer import TrainingInterrupted
    try:
        if args.resume:
            summary = train(resume=args.resume, overrides=train_overrides(args))
        else:
            summary = train(config_from_args(args), out=args.out)
    except TrainingInterrupted as err:
        print(f"deeprecipe: {err}; continue with --resume", file=sys.stderr)
        return 130
    return 0 if summary else 1


def _setup_evaluate(p):
    p.add_argument("run")
    p.add_argument("--data", help="evaluate on all of this data spec instead of the run's test split")
    p.add_argument("--tta", help="test-time augmentation: flip, 5crop, 10crop, multiscale")


@command("evaluate", "test accuracy of a trained run (JSON on stdout)", _setup_evaluate)
def cmd_evaluate(args) -> int:
    from .api import evaluate
    result = evaluate(args.run, data=args.data, tta=args.tta)
    print(json.dumps(result))
    return 0


def _setup_predict(p):
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--top", type=int, default=1)


@command("predict", "classify images; one JSON object per image on stdout", _setup_predict)
def cmd_predict(args) -> int:
    from .api import predict
    if args.top < 1:
        raise DeepRecipeError(f"--top {args.top} must be at least 1", "e.g. --top 3")
    for row in predict(args.run, args.images, top=args.top):
        print(json.dumps(row), flush=True)
    return 0


# ==== data and augmentation (issue 3) ============================================================
def _setup_data(p):
    dsub = p.add_subparsers(dest="action", parser_class=_Parser, required=True)
    q = dsub.add_parser("inspect", help="sizes, class counts, mean/std")
    q.add_argument("spec")
    q.add_argument("--json", action="store_true")


@command("data", "look at a dataset: data inspect SPEC", _setup_data)
def cmd_data(args) -> int:
    from .api import inspect_data
    info = inspect_data(args.spec)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['spec']}: {info['images']} images, {info['classes']} classes, shape {'×'.join(map(str, info['shape']))}")
    for name, n in info["class_counts"].items():
        print(f"  {name:>12}  {n}")
    print("  mean " + ", ".join(f"{m:.4f}" for m in info["mean"]) + "   std " + ", ".join(f"{s:.4f}" for s in info["std"]))
    if info.get("given_split"):
        print("  given split: " + ", ".join(f"{k} {v}" for k, v in info["given_split"].items()))
    if info["skipped"]:
        print(f"  skipped {len(info['skipped'])} unreadable file(s)")
    return 0


# ==== models (issue 4) ===========================================================================
def _setup_models(p):
    p.add_argument("name", nargs="?")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--input-size", type=int, default=32)


@command("models", "list models, or show one", _setup_models)
def cmd_models(args) -> int:
    from .models import create_model, list_models
    if args.name:
        model = create_model(args.name, num_classes=args.num_classes, in_chans=args.in_chans, input_size=args.input_size)
        print(model)
        print(f"params: {sum(p.numel() for p in model.parameters()):,}")
        return 0
    for name in list_models():
        print(name)
    return 0


# ==== the recipe: doctor, lr-find, search, recipe (issue 6) ======================================


# ==== transfer, features, distillation (issue 7) =================================================


# ==== experiments (issue 8) ======================================================================


# ==== reports, runs, export (issue 11) ===========================================================


# ==== labelling help: audit, project, explain (issue 13) =========================================
def _setup_audit(p):
    p.add_argument("run")
    p.add_argument("--data", required=True, help="data spec whose labels to audit (training and test images)")
    p.add_argument("--folds", type=int, default=5, help="k of the out-of-fold scoring (StratifiedKFold)")
    p.add_argument("--epochs", type=int, help="epochs per fold model (default: the run's)")
    p.add_argument("--top", type=int, default=100, help="suspects shown on the HTML page")
    p.add_argument("--out", help="folder for audit.csv and audit.html (default RUN/audit)")
    p.add_argument("--relabel", metavar="CSV", help="apply corrections (index or path, new label) instead of auditing")


@command("audit", "rank images by how likely their label is wrong (out-of-fold); or apply corrections", _setup_audit)
def cmd_audit(args) -> int:
    from pathlib import Path
    from .api import load_run
    from .labelling.audit import audit, load_audit_data, relabel, write_audit
    out = Path(args.out or Path(args.run) / "audit")
    if args.relabel:
        loaded = load_run(args.run)
        ds = load_audit_data(loaded.classes, args.data, loaded.input_shape)
        spec, changed = relabel(ds, args.relabel, out / "relabelled.npz")
        print(f"changed {changed} label(s); train on the corrected copy with --data {spec}")
        return 0
    result, ds = audit(args.run, args.data, folds=args.folds, epochs=args.epochs)
    paths = write_audit(result, ds, out, top=args.top)
    print(f"ranked {len(result.order)} images; wrote {paths['csv']} and {paths['html']}")
    return 0


def _setup_project(p):
    p.add_argument("run")
    p.add_argument("--data", required=True)
    p.add_argument("--method", choices=["tsne", "umap"], default="tsne")
    p.add_argument("--limit", type=int, default=2000, help="project a stratified sample of at most this many images")
    p.add_argument("--suspects", metavar="AUDIT_CSV", help="ring the top suspects of an audit.csv")
    p.add_argument("--out", help="folder for the PNG and HTML (default RUN/projection)")


@command("project", "2-D map of the learned features (PNG + interactive HTML)", _setup_project)
def cmd_project(args) -> int:
    from pathlib import Path
    from .labelling.project import project, write_projection
    proj, ds, images = project(args.run, args.data, args.method, limit=args.limit, suspects=args.suspects)
    paths = write_projection(proj, ds.classes, images, Path(args.out or Path(args.run) / "projection"), args.method)
    print(f"projected {len(proj.indices)} images; wrote {paths['png']} and {paths['html']}")
    return 0


def _setup_explain(p):
    p.add_argument("run")
    p.add_argument("images", nargs="+")
    p.add_argument("--out", help="folder for the heat-map PNGs (default RUN/explain)")


@command("explain", "Grad-CAM heat-maps over images (last conv stage)", _setup_explain)
def cmd_explain(args) -> int:
    from pathlib import Path
    from .labelling.explain import explain
    for row in explain(args.run, args.images, Path(args.out or Path(args.run) / "explain")):
        print(json.dumps(row), flush=True)
    return 0



# ---------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deeprecipe", description="Train image classifiers the way practitioners do.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, (_, setup, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if setup is not None:
            setup(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            build_parser().print_help()
            return 2
        return int(COMMANDS[args.command][0](args) or 0)
    except DeepRecipeError as err:
        if debug:
            raise
        print(f"deeprecipe: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deeprecipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
