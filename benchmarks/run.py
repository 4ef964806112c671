"""Time-to-accuracy, deeprecipe's default vs the plain-PyTorch reference, side by side.

    python benchmarks/run.py                    # 2 repeats of both, the default epochs (8), then the peers (~10 min on 2 cores)
    python benchmarks/run.py --repeats 3
    python benchmarks/run.py --epochs 1 --limit 256 --repeats 1    # a smoke test

Each pipeline runs in its own subprocess, one after the other, alternating which goes first, so
that a busy machine slows both alike; ratios are taken within one repeat. The table and a JSON file
(benchmarks/results/cpu-<time>.json) give test accuracy, seconds, seconds to first reach the target
accuracy (min(reference's final test accuracy, 98%)), training images/s, the data pipeline's share
of step time, FLOPs per image and achieved FLOP/s as a share of the machine's peak.
With a GPU, benchmarks/gpu.py runs after (ResNet-18 at 32×32); without one it says it is skipped.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's deeprecipe, not an installed one
sys.path.insert(0, str(HERE))

from hardware import cpu_peak, training_flops_per_image  # noqa: E402

SCRIPTS = {"reference": [HERE / "reference.py"], "deeprecipe": [HERE / "deeprecipe_run.py"],
           # recipes people copy, each with its own model, optimizer, schedule and epochs (benchmarks/peers.py)
           "pytorch-example": [HERE / "peers.py", "--recipe", "pytorch-example"],
           "fastai-style": [HERE / "peers.py", "--recipe", "fastai-style"]}
PEERS = ("pytorch-example", "fastai-style")
TARGET_CAP = 0.98


def run_pipeline(name: str, epochs: int | None, limit: int | None, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, *map(str, SCRIPTS[name]), "--json", str(out), *extra]
        cmd += ["--epochs", str(epochs)] if epochs else []
        cmd += ["--limit", str(limit)] if limit else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


def seconds_to_reach(history: list[dict], target: float) -> float | None:
    """Seconds on the pipeline's own clock at the end of the first epoch whose test accuracy ≥ target."""
    return next((row["seconds"] for row in history if row["test_acc"] >= target - 1e-9), None)


def score(result: dict, target: float, train_flops: float, peak: float) -> dict:
    ips = result["train_images_per_second"]
    return {"test_acc": result["test_acc"], "seconds": result["seconds"],
            "seconds_to_target": seconds_to_reach(result["history"], target),
            "images_per_second": ips, "data_share": result["data_seconds"] / max(result["step_seconds"], 1e-9),
            "achieved_flops": ips * train_flops, "share_of_peak": ips * train_flops / peak,
            "precision": result["precision"], "channels_last": result["channels_last"]}


def ratio(a, b):
    return a / b if a is not None and b else None


def one_repeat(i: int, args, flops: dict, peaks: dict) -> dict:
    order = ["reference", "deeprecipe"] if i % 2 == 0 else ["deeprecipe", "reference"]
    # Both sides get the same thread count (deeprecipe would otherwise pick its own from the machine's load).
    extra = {"reference": ["--threads", str(args.threads)],
             "deeprecipe": ["--set", f"train.threads={args.threads}", *args.deeprecipe_set]}
    raw = {name: run_pipeline(name, args.epochs, args.limit, extra[name]) for name in order}
    result = compare(raw, order, flops, peaks)
    if not args.no_peers:
        peers = {name: run_pipeline(name, args.epochs, args.limit, ["--threads", str(args.threads)]) for name in PEERS}
        result["peers"] = compare_peers(raw["deeprecipe"], peers)
    return result


def compare_peers(ours: dict, peers: dict) -> dict:
    """deeprecipe's seconds to each peer's final test accuracy, against the peer's own seconds to it."""
    rows = {}
    for name, peer in peers.items():
        target = peer["test_acc"]
        mine, theirs = seconds_to_reach(ours["history"], target), seconds_to_reach(peer["history"], target)
        rows[name] = {"final_acc": target, "peer_seconds": theirs, "deeprecipe_seconds": mine,
                      "ratio": ratio(mine, theirs), "peer_images_per_second": peer["train_images_per_second"],
                      "history": peer["history"]}
    return rows


def compare(raw: dict, order: list[str], flops: dict, peaks: dict) -> dict:
    """One repeat's table row set: each side scored against the same target, and their ratios."""
    target = min(raw["reference"]["test_acc"], TARGET_CAP)
    scored = {name: score(r, target, flops["train"], peaks["bf16" if r["precision"] == "bf16" else "fp32"])
              for name, r in raw.items()}
    ours, ref = scored["deeprecipe"], scored["reference"]
    return {"order": order, "target": target, **scored, "raw": raw,
            "ratios": {"seconds": ratio(ours["seconds"], ref["seconds"]),
                       "seconds_to_target": ratio(ours["seconds_to_target"], ref["seconds_to_target"]),
                       "images_per_second": ratio(ours["images_per_second"], ref["images_per_second"])}}


def fmt(v, kind: str) -> str:
    if v is None:
        return "—"
    return {"acc": f"{v:.4f}", "s": f"{v:.1f}", "ips": f"{v:,.0f}", "pct": f"{100 * v:.1f}%", "x": f"{v:.2f}"}[kind]


def print_table(repeats: list[dict], flops: dict, cpu: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    rows = [("test accuracy", "test_acc", "acc"), ("seconds (train + val)", "seconds", "s"),
            ("seconds to target acc", "seconds_to_target", "s"), ("train images/s", "images_per_second", "ips"),
            ("data share of step time", "data_share", "pct"), ("share of peak FLOP/s", "share_of_peak", "pct")]
    console = Console()
    for i, rep in enumerate(repeats):
        table = Table(title=f"repeat {i + 1} (order: {' → '.join(rep['order'])}; target acc {rep['target']:.4f})")
        for col in ("metric", "reference", "deeprecipe", "deeprecipe / reference"):
            table.add_column(col, justify="left" if col == "metric" else "right")
        for label, key, kind in rows:
            r = rep["ratios"].get(key)
            table.add_row(label, fmt(rep["reference"][key], kind), fmt(rep["deeprecipe"][key], kind), fmt(r, "x"))
        console.print(table)
    med = {k: statistics.median([r["ratios"][k] for r in repeats if r["ratios"][k] is not None] or [float("nan")])
           for k in ("seconds", "seconds_to_target", "images_per_second")}
    console.print(f"median ratios over {len(repeats)} repeat(s): seconds {med['seconds']:.2f}, "
                  f"seconds to target {med['seconds_to_target']:.2f}, images/s {med['images_per_second']:.2f}")
    for i, rep in enumerate(repeats):
        for name, row in rep.get("peers", {}).items():
            console.print(f"repeat {i + 1}: {name} ends at {row['final_acc']:.4f} after {fmt(row['peer_seconds'], 's')} s; "
                          f"deeprecipe reaches it after {fmt(row['deeprecipe_seconds'], 's')} s — ratio "
                          f"{fmt(row['ratio'], 'x')}")
    console.print(f"model: {flops['forward'] / 1e6:.1f} MFLOP forward, {flops['train'] / 1e6:.1f} MFLOP per training "
                  f"image; CPU {cpu['model']}, {cpu['cores']} cores × {cpu['ghz']} GHz: peak fp32 "
                  f"{cpu['fp32_flops'] / 1e9:.0f} GFLOP/s, bf16 {cpu['bf16_flops'] / 1e9:.0f} GFLOP/s "
                  "(share of peak uses the peak of each pipeline's own precision)")


def run_gpu(args) -> dict | None:
    import torch
    if not torch.cuda.is_available():
        print("GPU benchmark skipped: no CUDA device visible (torch.cuda.is_available() is False).")
        return None
    cmd = [sys.executable, str(HERE / "gpu.py"), "--json", "-"] + (["--steps", "5"] if args.limit else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"gpu benchmark failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout)
    print(result["table"])
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="default: both pipelines' default (deeprecipe's train.epochs)")
    ap.add_argument("--limit", type=int, default=None, help="first N images of each split (smoke tests)")
    ap.add_argument("--set", dest="deeprecipe_set", action="append", default=[], metavar="KEY=VALUE",
                    help="pass --set KEY=VALUE to deeprecipe's side (e.g. train.precision=fp32)")
    ap.add_argument("--threads", type=int, default=len(__import__("os").sched_getaffinity(0)),
                    help="CPU threads for both pipelines (default: every core this process may use)")
    ap.add_argument("--no-peers", action="store_true", help="skip the peers' own recipes (benchmarks/peers.py)")
    ap.add_argument("--no-gpu", action="store_true", help="skip the GPU benchmark even when a GPU is visible")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    args.deeprecipe_set = [a for kv in args.deeprecipe_set for a in ("--set", kv)]

    import torch
    from deeprecipe.models import create_model
    flops = training_flops_per_image(create_model("convnet", num_classes=10, in_chans=1), (1, 28, 28))
    cpu = cpu_peak()
    peaks = {"fp32": cpu["fp32_flops"], "bf16": cpu["bf16_flops"]}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"cpu-{time.strftime('%Y%m%d-%H%M%S')}.json"
    record = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "torch": torch.__version__,
              "cpu": cpu, "flops_per_image": flops, "args": vars(args), "repeats": [], "gpu": None}
    for i in range(args.repeats):
        record["repeats"].append(one_repeat(i, args, flops, peaks))
        path.write_text(json.dumps(record, indent=1))  # keep finished repeats if a later one is interrupted
        print(f"repeat {i + 1}/{args.repeats} done", file=sys.stderr)
    print_table(record["repeats"], flops, cpu)
    record["gpu"] = None if args.no_gpu else run_gpu(args)
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
