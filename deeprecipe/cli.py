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

# ==== training and using runs ====================================================================================
def _setup_train(p):
    add_train_options(p)
    p.add_argument("--resume", metavar="RUN", help="continue RUN from checkpoints/last.pt")
    p.add_argument("--devices", type=int, metavar="N",
                   help="train on N processes of this machine (torchrun + DDP; N GPUs, or N CPU processes)")


def _argv_without_devices(argv: list[str]) -> list[str]:
    """The same command line for each torchrun worker, minus --devices (each worker is one device)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--devices":
            skip = True
        elif not a.startswith("--devices="):
            out.append(a)
    return out


@command("train", "train a model (defaults: builtin:mnist5k, convnet)", _setup_train)
def cmd_train(args) -> int:
    from .api import train
    from .train.trainer import TrainingInterrupted
    if args.devices is not None:
        from .train.distributed import launch
        return launch(args.devices, _argv_without_devices(args.argv))
    try:
        if args.resume:
            train(resume=args.resume, overrides=train_overrides(args))
        else:
            train(config_from_args(args), out=args.out)
    except TrainingInterrupted as err:
        print(f"deeprecipe: {err}; continue with --resume", file=sys.stderr)
        return 130
    return 0


def _setup_evaluate(p):
    p.add_argument("run", nargs="+", help="one run, or several to evaluate as an ensemble (averaged probabilities)")
    p.add_argument("--data", help="evaluate on all of this data spec instead of the run's test split")
    p.add_argument("--tta", help="test-time augmentation: flip, 5crop, 10crop, multiscale")


@command("evaluate", "test accuracy of a trained run (JSON on stdout)", _setup_evaluate)
def cmd_evaluate(args) -> int:
    from .api import evaluate, evaluate_ensemble
    if len(args.run) > 1:
        if args.tta:
            raise DeepRecipeError("--tta works with one run at a time", "drop --tta, or evaluate each run alone")
        result = evaluate_ensemble(args.run, data=args.data)
    else:
        result = evaluate(args.run[0], data=args.data, tta=args.tta)
    print(json.dumps(result))
    return 0


def _setup_recalibrate(p):
    p.add_argument("run", help="a run folder (or one of its checkpoint files)")
    p.add_argument("--checkpoint", default="best.pt", help="which checkpoint of the run (best.pt, last.pt)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch while re-estimating")


@command("recalibrate", "re-estimate batch-norm statistics on the clean training data; saves *_recalibrated.pt "
                        "beside the checkpoint, accuracy before/after as JSON", _setup_recalibrate)
def cmd_recalibrate(args) -> int:
    from .recalibrate import recalibrate_run
    print(json.dumps(recalibrate_run(args.run, args.checkpoint, args.batch_size)))
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


# ==== data and augmentation ======================================================================================
def _setup_data(p):
    dsub = p.add_subparsers(dest="action", parser_class=_Parser, required=True)
    q = dsub.add_parser("inspect", help="sizes, class balance, mean/std, duplicates, sample grid")
    q.add_argument("spec")
    q.add_argument("--json", action="store_true")
    q.add_argument("--out", metavar="DIR", help="write samples.png (a grid of images per class) here")


def _print_inspection(info: dict) -> None:
    print(f"{info['spec']}: {info['images']} images, {info['classes']} classes, shape {'×'.join(map(str, info['shape']))}")
    total = max(1, info["images"])
    for name, n in info["class_counts"].items():
        print(f"  {name:>12}  {n:>7}  {100 * n / total:5.1f}%")
    if info.get("imbalance"):
        print(f"  imbalance (largest/smallest class): {info['imbalance']:.2f}")
    print("  mean " + ", ".join(f"{m:.4f}" for m in info["mean"]) + "   std " + ", ".join(f"{s:.4f}" for s in info["std"]))
    if info.get("given_split"):
        print("  given split: " + ", ".join(f"{k} {v}" for k, v in info["given_split"].items()))
    if info.get("files"):
        print("  file sizes: " + ", ".join(f"{k} ×{v}" for k, v in info["files"]["sizes"].items()))
        print("  file modes: " + ", ".join(f"{k} ×{v}" for k, v in info["files"]["modes"].items()))
    dup = info["duplicates"]
    print(f"  duplicates: {dup['duplicate_images']} image(s) repeat an earlier one ({dup['duplicate_groups']} group(s))")
    for pair, n in dup["cross_split"].items():
        print(f"  LEAK: {n} identical image(s) shared by {pair}")
    if info["skipped"]:
        print(f"  skipped {len(info['skipped'])} unreadable file(s)")
    if info.get("sample_grid"):
        print(f"  sample grid: {info['sample_grid']}")


@command("data", "look at a dataset: data inspect SPEC", _setup_data)
def cmd_data(args) -> int:
    from .api import inspect_data
    info = inspect_data(args.spec, out_dir=args.out)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_inspection(info)
    return 0


def _setup_augment(p):
    asub = p.add_subparsers(dest="action", parser_class=_Parser, required=True)
    q = asub.add_parser("preview", help="PNG grid of originals and augmented copies")
    q.add_argument("spec")
    q.add_argument("--aug", action="append", required=True, metavar="OP",
                   help="augmentation, e.g. crop:scale=0.3-1 (repeatable; applied in order)")
    q.add_argument("--out", default="augment_preview.png", metavar="FILE.png")
    q.add_argument("--count", type=int, default=8, help="images per row")
    q.add_argument("--copies", type=int, default=4, help="augmented rows")
    q.add_argument("--seed", type=int, default=0)
    asub.add_parser("list", help="the augmentation names")


@command("augment", "augmentations: augment preview SPEC --aug OP …, augment list", _setup_augment)
def cmd_augment(args) -> int:
    if args.action == "list":
        from .augment import list_augments
        print("\n".join(list_augments()))
        return 0
    from .data.inspect import augment_preview
    if args.count < 1 or args.copies < 1:
        raise DeepRecipeError("--count and --copies must be at least 1", "e.g. --count 8 --copies 4")
    path = augment_preview(args.spec, args.aug, args.out, count=args.count, copies=args.copies, seed=args.seed)
    print(path)
    return 0


# ==== models =====================================================================================================
def _setup_models(p):
    p.add_argument("name", nargs="?", help="show this model's layer table instead of the list")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--input-size", type=int, default=32, help="image side in pixels for shapes and FLOPs")
    p.add_argument("--family", help="list only this family (mlp, lenet, convnet, alexnet, vgg, resnet, allconv, nin, googlenet, "
                        "densenet, mobilenet, shufflenet, efficientnet, convnext, squeezenet); "
                        "NAME may also be timm:NAME")
    p.add_argument("--set", action="append", default=[], metavar="KNOB=VALUE", dest="knobs",
                   help="model knob for the layer table, e.g. --set norm=group (repeatable)")


@command("models", "list models with params and FLOPs, or show one model's layers", _setup_models)
def cmd_models(args) -> int:
    import yaml
    from .models import summary
    for value, flag in ((args.num_classes, "--num-classes"), (args.in_chans, "--in-chans"), (args.input_size, "--input-size")):
        if value < 1:
            raise DeepRecipeError(f"{flag} {value} must be at least 1", f"e.g. {flag} 10")
    if args.name:
        bad = [kv for kv in args.knobs if "=" not in kv]
        if bad:
            raise DeepRecipeError(f"--set {bad[0]!r} is not KNOB=VALUE", "e.g. --set norm=group")
        knobs = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.knobs)}
        model = summary.build_on_meta(args.name, args.num_classes, args.in_chans, args.input_size, **knobs)
        print(summary.format_layers(summary.layer_table(model, args.in_chans, args.input_size), model,
                                    args.in_chans, args.input_size))
        return 0
    rows = summary.model_rows(args.num_classes, args.in_chans, args.input_size, args.family)
    if not rows:
        raise DeepRecipeError(f"no models in family {args.family!r}", "run `deeprecipe models` for all families")
    print(summary.format_models(rows, args.in_chans, args.input_size))
    return 0


# ==== the recipe: doctor, lr-find, search, recipe ================================================================
def _setup_doctor(p):
    add_train_options(p)
    p.add_argument("--samples", type=int, default=50, help="images to overfit (10–100)")
    p.add_argument("--steps", type=int, default=200, help="step budget for the overfit check")


@command("doctor", "sanity checks before training; exit 1 when one fails", _setup_doctor)
def cmd_doctor(args) -> int:
    from .session import Session
    from .recipe.sanity import all_passed, print_checks, run_doctor
    checks = run_doctor(Session.create(config_from_args(args)), overfit_samples=args.samples, overfit_steps=args.steps)
    print_checks(checks)
    return 0 if all_passed(checks) else 1


def _setup_lr_find(p):
    add_train_options(p)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--start-lr", type=float, default=1e-6)
    p.add_argument("--end-lr", type=float, default=1.0)
    p.add_argument("--method", choices=["range", "short-runs"], default="range",
                   help="range: one range test (--steps); short-runs: rates 1…1e-4 each trained --iterations "
                        "steps from the same start under the schedule's shape, the vertex around the lowest final loss")
    p.add_argument("--iterations", type=int, default=None,
                   help="steps per candidate rate (short-runs); default the configured run's steps, 20…300")


@command("lr-find", "a learning rate: range test (default) or short runs, suggestion and plot", _setup_lr_find)
def cmd_lr_find(args) -> int:
    from pathlib import Path
    from .session import Session
    from .recipe.lr_find import plot_lr_find, run_lr_find
    from .utils import note, write_json
    if not 0 < args.start_lr < args.end_lr or args.steps < 10 or (args.iterations or 10) < 10:
        raise DeepRecipeError("lr-find needs 0 < --start-lr < --end-lr, --steps ≥ 10 and --iterations ≥ 10",
                              "e.g. --start-lr 1e-6 --end-lr 1")
    cfg = config_from_args(args)
    out = Path(args.out or "runs/lr-find")
    if args.method == "short-runs":
        from .recipe.lr_methods import plot_short_runs, run_short_runs
        runs = run_short_runs(Session.create(cfg), iterations=args.iterations)
        png = plot_short_runs(runs, out / "lr_find.png")
        write_json(out / "lr_find.json", runs.to_dict())
        if runs.suggestion is None:
            note(f"no suggestion: every candidate rate diverged; plot {png}")
            return 1
        print(json.dumps({"suggested_lr": runs.suggestion, "method": "short-runs", "plot": str(png)}))
        return 0
    result = run_lr_find(Session.create(cfg), args.start_lr, args.end_lr, args.steps)
    png = plot_lr_find(result, out / "lr_find.png")
    write_json(out / "lr_find.json", result.to_dict())
    if result.suggestion is None:
        note(f"no suggestion: the loss diverged after {len(result.lrs)} steps; plot {png}")
        return 1
    note(f"plot {png}")
    print(json.dumps({"suggested_lr": result.suggestion, "min_loss_lr": result.min_loss_lr,
                      "steepest_lr": result.steepest_lr, "plot": str(png)}))
    return 0


def _setup_search(p):
    add_train_options(p)
    p.add_argument("--trials", type=int, help="coarse trials (default search.trials)")
    p.add_argument("--storage", help="SQLAlchemy URL shared by workers (default: sqlite file in the run folder)")
    p.add_argument("--study", help="study name (workers with the same name share it)")


@command("search", "Optuna search over search.space: coarse, then refine; writes best.yaml", _setup_search)
def cmd_search(args) -> int:
    from pathlib import Path
    from .session import Session
    from .recipe.search import print_trials, report_best, run_search
    if args.trials is not None and args.trials < 1:
        raise DeepRecipeError(f"--trials {args.trials} must be at least 1", "e.g. --trials 20")
    cfg = config_from_args(args)
    run_dir = Path(args.out or "runs/search")
    result = run_search(Session.create(cfg), run_dir, args.trials, args.storage, args.study)
    print_trials(result.trials)
    report_best(result, run_dir)
    return 0


@command("recipe", "all six steps (doctor, overfit, lr-find, search, train, diagnose); recipe.html", add_train_options)
def cmd_recipe(args) -> int:
    from .recipe.pipeline import run_recipe
    outcome = run_recipe(config_from_args(args), out=args.out)
    print(json.dumps({k: outcome[k] for k in ("run_dir", "test_acc", "stopped_at")}))
    return 0 if outcome["stopped_at"] is None else 1



# ==== transfer, features, distillation ===========================================================================
def _setup_features(p):
    p.add_argument("run")
    p.add_argument("--stage", required=True, help="stage to tap (see `deeprecipe models NAME`), e.g. stage3")
    p.add_argument("--data", required=True, help="data spec to embed, e.g. builtin:mnist5k or a folder")
    p.add_argument("--out", help="npz file to write (default features-STAGE.npz)")


@command("features", "embeddings of a run's stage for a dataset, to npz", _setup_features)
def cmd_features(args) -> int:
    from .export import features_to_npz
    out = args.out or f"features-{args.stage}.npz"
    info = features_to_npz(args.run, args.stage, args.data, out)
    print(json.dumps(info))
    return 0


# ==== experiments ================================================================================================
def _setup_experiment(p):
    p.add_argument("name", nargs="?", help="experiment to run; omit to list them")
    p.add_argument("--quick", action="store_true", help="a smaller, faster version")
    p.add_argument("--out", help="folder for its table and plot (default runs/experiments/NAME-<time>)")


@command("experiment", "run a built-in reproduction of a well-known result (table, plot, conclusion)", _setup_experiment)
def cmd_experiment(args) -> int:
    from .experiments.registry import list_experiments, print_result, run_experiment
    if not args.name:
        for exp in list_experiments():
            print(f"{exp.name:>15}  {exp.claim}")
        return 0
    result, out = run_experiment(args.name, quick=args.quick, out=args.out)
    print_result(args.name, result, out)
    return 0


# ==== reports, runs, export ======================================================================================
def _setup_report(p):
    p.add_argument("run", help="a run folder written by `deeprecipe train`")


@command("report", "rebuild RUN/report.html (curves, confusion, mistakes, diagnosis)", _setup_report)
def cmd_report(args) -> int:
    from .report import build_report
    print(build_report(args.run))
    return 0


def _setup_runs(p):
    p.add_argument("targets", nargs="*", metavar="FOLDER | compare RUN RUN ...",
                   help="a folder of runs (default runs/), or `compare` and two or more run folders")
    p.add_argument("--sort", help="column to sort by (best first): name, model, data, epochs, best_val, "
                                  "test_acc (default), seconds")
    p.add_argument("--out", help="for compare: where to write the overlaid curves PNG")


@command("runs", "table of runs in a folder; `runs compare RUN RUN ...` overlays curves", _setup_runs)
def cmd_runs(args) -> int:
    from rich.console import Console
    from .runs import compare_runs, differences_table, list_runs, runs_table, unfinished_advice
    console = Console()
    if args.targets[:1] == ["compare"]:
        if args.sort:
            raise DeepRecipeError("--sort applies to the runs table, not to compare", "drop --sort")
        result = compare_runs(args.targets[1:], out=args.out)
        console.print(runs_table(result["runs"], title="compared runs"))
        console.print(differences_table(result) if result["differences"] else "configs are identical")
        console.print(f"curves: {result['png']}")
        return 0
    if len(args.targets) > 1:
        raise DeepRecipeError(f"runs takes one folder, got {len(args.targets)}", "to compare runs: deeprecipe runs compare RUN RUN")
    if args.out:
        raise DeepRecipeError("--out applies to `runs compare`", "drop --out, or use deeprecipe runs compare RUN RUN --out FILE")
    rows = list_runs(args.targets[0] if args.targets else "runs", sort=args.sort or "test_acc")
    console.print(runs_table(rows))
    for line in unfinished_advice(rows):
        print(line)
    return 0


def _setup_export(p):
    p.add_argument("run")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx")
    p.add_argument("--out", help="output file (default RUN/model.onnx or RUN/model.pt)")


@command("export", "export RUN's best model to ONNX or TorchScript, with a parity check", _setup_export)
def cmd_export(args) -> int:
    from .export import describe, export_run
    print(describe(export_run(args.run, args.format, args.out)))
    return 0



# ==== labelling help: audit, project, explain ====================================================================
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
    from .loaded import load_run
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
        args.argv = argv  # the command line as given (train --devices relaunches it under torchrun)
        return int(COMMANDS[args.command][0](args) or 0)
    except DeepRecipeError as err:
        if debug:
            raise
        print(f"deeprecipe: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # full disk, permissions, a vanished folder: the OS's reason, in one line
        if debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"deeprecipe: error: {where}{err.strerror or err} — check free disk space and permissions "
              "(files already written are kept)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("deeprecipe: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
