"""Which speed switches pay on this machine: one switch at a time, measured, for docs/performance.md.

Two parts, both on deeprecipe's default model (convnet) and batch size (64):
  data    — milliseconds to produce one augmented, normalised training batch: deeprecipe's in-memory
            uint8 TensorLoader with batched translate:2, vs PIL + torchvision per-image transforms
            through a DataLoader with 0 and 2 workers.
  compute — training images/s of the step alone (forward, loss, backward, optimizer) on ready batches:
            fp32 NCHW, channels_last, bf16 autocast, both, optimizer for-loop / foreach / fused,
            1 vs all threads, and torch.compile (its compile time reported separately).
Variants run round-robin (`--rounds`) so a busy machine slows them alike; medians are reported.

    python benchmarks/ablation.py [--steps 30] [--rounds 3] [--compile] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's deeprecipe, not an installed one
sys.path.insert(0, str(HERE))
from deeprecipe.session import prepare_data  # noqa: E402
from deeprecipe.augment import build_pipeline  # noqa: E402
from deeprecipe.config import resolve_config  # noqa: E402
from deeprecipe.data.loader import TensorLoader  # noqa: E402
from deeprecipe.models import create_model  # noqa: E402
from deeprecipe.runtime import pick_precision  # noqa: E402
from deeprecipe.train.optim import param_groups  # noqa: E402

BATCH = 64


# ------------------------------------------------------------------------------------------ data
def tensor_loader(data, channels_last: bool) -> TensorLoader:
    images, labels = data.part("train")
    return TensorLoader(images, labels, BATCH, data.mean, data.std, shuffle=True,
                        augment=build_pipeline(["translate:2"], 10), channels_last=channels_last)


def reference_loader(data, workers: int):
    from reference import DigitImages
    from torchvision import transforms
    images, labels = data.part("train")
    tf = transforms.Compose([transforms.RandomCrop(28, padding=2), transforms.ToTensor(),
                             transforms.Normalize(data.mean, data.std)])
    return torch.utils.data.DataLoader(DigitImages(images[:, 0].numpy(), labels.numpy(), tf), batch_size=BATCH,
                                       shuffle=True, num_workers=workers, persistent_workers=workers > 0)


def ms_per_batch(loader, batches: int) -> float:
    it = iter(loader)
    next(it)  # worker start-up and first-batch costs are not per-batch costs
    t = time.perf_counter()
    for _ in range(batches):
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            next(it)
    return 1000 * (time.perf_counter() - t) / batches


def data_ablation(data, batches: int, rounds: int) -> list[dict]:
    loaders = {"TensorLoader (uint8 in memory, batched translate)": tensor_loader(data, True),
               "PIL + per-image transforms, DataLoader workers=0": reference_loader(data, 0),
               "PIL + per-image transforms, DataLoader workers=2": reference_loader(data, 2)}
    times = {k: [] for k in loaders}
    for _ in range(rounds):
        for name, loader in loaders.items():
            times[name].append(ms_per_batch(loader, batches))
    return [{"variant": k, "ms_per_batch": statistics.median(v)} for k, v in times.items()]


# ------------------------------------------------------------------------------------------ compute
# The "+" rows build on what runtime.py picks on this CPU: bf16 only where it has AVX512-BF16/AMX (without
# them bf16 autocast is emulated and ~10× slower), channels_last for conv nets.
AUTO_BF16 = pick_precision("auto", torch.device("cpu")) == "bf16"
AUTO = f"{'bf16 autocast' if AUTO_BF16 else 'fp32'} + channels_last (deeprecipe's choice here)"
VARIANTS = {  # name: (channels_last, bf16, optimizer implementation, threads: None = all physical cores)
    "fp32 NCHW (tutorial)": (False, False, "loop", None),
    "fp32 channels_last": (True, False, "loop", None),
    "bf16 autocast NCHW": (False, True, "loop", None),
    "bf16 autocast + channels_last": (True, True, "loop", None),
    AUTO: (True, AUTO_BF16, "loop", None),
    "  + AdamW foreach": (True, AUTO_BF16, "foreach", None),
    "  + AdamW fused": (True, AUTO_BF16, "fused", None),
    "  with 1 thread": (True, AUTO_BF16, "loop", 1),
}


class Stepper:
    """One training configuration: model, optimizer, precision, memory format."""

    def __init__(self, channels_last: bool, bf16: bool, impl: str, threads: int | None, compile_: bool = False):
        torch.manual_seed(0)
        self.model = create_model("convnet", num_classes=10, in_chans=1)
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        flags = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}[impl]
        self.opt = torch.optim.AdamW(param_groups(self.model, 5e-4), lr=1e-3, **flags)
        self.bf16, self.channels_last, self.threads = bf16, channels_last, threads
        self.forward = torch.compile(self.model) if compile_ else self.model

    def step(self, x, y) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def images_per_second(self, batches: list, steps: int) -> float:
        default_threads = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            fmt = torch.channels_last if self.channels_last else torch.contiguous_format
            batches = [(x.contiguous(memory_format=fmt), y) for x, y in batches]
            self.step(*batches[0])  # warm-up (oneDNN primitive creation)
            t = time.perf_counter()
            for i in range(steps):
                self.step(*batches[i % len(batches)])
            return steps * BATCH / (time.perf_counter() - t)
        finally:
            torch.set_num_threads(default_threads)


def compute_ablation(batches: list, steps: int, rounds: int, with_compile: bool) -> list[dict]:
    steppers = {name: Stepper(*spec) for name, spec in VARIANTS.items()}
    extra = {}
    if with_compile:
        t = time.perf_counter()
        compiled = Stepper(True, AUTO_BF16, "loop", None, compile_=True)
        compiled.step(*[(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches[:1]][0])
        extra = {"compile_seconds": time.perf_counter() - t}
        steppers["  + torch.compile"] = compiled
    ips = {k: [] for k in steppers}
    for _ in range(rounds):
        for name, stepper in steppers.items():
            ips[name].append(stepper.images_per_second(batches, steps))
    base = statistics.median(ips["fp32 NCHW (tutorial)"])
    rows = [{"variant": k, "images_per_second": statistics.median(v), "speedup": statistics.median(v) / base}
            for k, v in ips.items()]
    if extra:
        rows[-1].update(extra)
    return rows


def print_tables(data_rows: list[dict], compute_rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console()
    t = Table(title="data: producing one training batch of 64")
    t.add_column("loader")
    t.add_column("ms / batch", justify="right")
    for r in data_rows:
        t.add_row(r["variant"], f"{r['ms_per_batch']:.2f}")
    console.print(t)
    t = Table(title="compute: training step alone, batch 64")
    for col in ("variant", "images/s", "vs fp32 NCHW", "compile s"):
        t.add_column(col, justify="left" if col == "variant" else "right")
    for r in compute_rows:
        t.add_row(r["variant"], f"{r['images_per_second']:,.0f}", f"{r['speedup']:.2f}×",
                  f"{r['compile_seconds']:.0f}" if "compile_seconds" in r else "")
    console.print(t)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="timed steps per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    data = prepare_data(resolve_config(None, []))
    data_rows = data_ablation(data, args.steps, args.rounds)
    batches = [b for _, b in zip(range(8), tensor_loader(data, False))]
    compute_rows = compute_ablation(batches, args.steps, args.rounds, args.compile)
    print_tables(data_rows, compute_rows)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                                               "data": data_rows, "compute": compute_rows}, indent=1))


if __name__ == "__main__":
    main()
