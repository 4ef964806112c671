"""Photo folders: deeprecipe against the plain torchvision pipeline, side by side in one run.

Builds a folder of real-photo JPEGs of mixed sizes and aspect ratios (benchmarks/photo_folder.py: crops
of the photos scikit-image and scikit-learn ship, 1–8 megapixels) and trains ResNet-18 on it at each
image size for the same epochs, twice:

* deeprecipe: ``deeprecipe train`` as a user runs it (data.resize=crop, its Trainer), starting from an
  empty decode cache — so the first epoch pays for decoding;
* reference: the tutorial pipeline — ``ImageFolder``, ``RandomResizedCrop`` + ``RandomHorizontalFlip`` +
  ``ToTensor`` + ``Normalize``, a ``DataLoader`` with worker processes, torchvision's ``resnet18``, AdamW.

Both draw crops with the same scale and ratio ranges, flip, use batch 64 and every file for training.
Each side runs in its own subprocess, so its peak memory is its own: the peak of the summed PSS (shared
pages split fairly) of the process and its DataLoader workers, sampled every 50 ms.

Reported per side and size: training images/s of the first epoch (deeprecipe's includes building the
cache) and of later epochs, the data pipeline's share of step time (time waiting for the next batch ÷
step time), peak memory; and deeprecipe / reference ratios, the numbers that survive a shared machine.

    python benchmarks/photos.py                       # 1,000 files, 64 and 128 px, 3 epochs
    python benchmarks/photos.py --files 200 --sizes 32 --epochs 2   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's deeprecipe, not an installed one

SCALE = (0.25, 1.0)     # deeprecipe's default data.crop_scale, used on both sides
RATIO = (0.75, 4 / 3)


# ------------------------------------------------------------------------------------------ memory
def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                for c in (t / "children").read_text().split()]
    except OSError:
        return []


class PeakMemory:
    """Peak of the summed PSS of this process and its descendants, sampled by a thread."""

    def __init__(self, every: float = 0.05):
        self.peak_kb, self.every, self._stop = 0, every, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        me = os.getpid()
        while not self._stop.is_set():
            pids, todo = [], [me]
            while todo:
                p = todo.pop()
                pids.append(p)
                todo += _children(p)
            self.peak_kb = max(self.peak_kb, sum(_pss_kb(p) for p in pids))
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


class TimedBatches:
    """Wraps a loader: counts the seconds spent waiting for each next batch (the data pipeline's time)."""

    def __init__(self, loader):
        self.loader, self.data_seconds = loader, 0.0

    def __iter__(self):
        it = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(it)
            except StopIteration:
                return
            self.data_seconds += time.perf_counter() - t0
            yield batch

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)


# ------------------------------------------------------------------------------------------ the two sides
def run_deeprecipe(folder: str, size: int, epochs: int, batch: int, threads: int) -> dict:
    from deeprecipe.session import Session, prepare_data
    from deeprecipe.config import build_config
    cfg = build_config({"data": {"spec": folder, "image_size": size, "resize": "crop", "augment": ["hflip"],
                                 "crop_scale": list(SCALE), "crop_ratio": list(RATIO),
                                 "val_fraction": 0.0, "test_fraction": 0.0},
                        "model": {"name": "resnet18"}, "optim": {"lr": 1e-3}, "schedule": {"name": "constant"},
                        "train": {"epochs": epochs, "batch_size": batch, "threads": threads}})
    t0 = time.perf_counter()
    data = prepare_data(cfg)           # scans the folder, decodes it into the (empty) cache
    prepare_seconds = time.perf_counter() - t0
    session = Session.create(cfg, data)
    trainer = session.make_trainer(None, show_progress=False)
    timed = trainer.train_loader = TimedBatches(trainer.train_loader)
    epoch_data: list[float] = []
    trainer.hooks["on_epoch_end"].append(lambda tr, row: epoch_data.append(timed.data_seconds - sum(epoch_data)))
    trainer.fit()
    n = len(data.splits["train"])
    secs = [r["seconds"] for r in trainer.state.history]
    secs[0] += prepare_seconds
    return {"n": n, "epoch_seconds": secs, "data_seconds": epoch_data, "prepare_seconds": prepare_seconds,
            "input": list(data.input_shape), "channels_last": session.channels_last}


def run_reference(folder: str, size: int, epochs: int, batch: int, threads: int, workers: int) -> dict:
    import torch
    import torchvision
    from torch.utils.data import DataLoader
    from torchvision import transforms
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tf = transforms.Compose([transforms.RandomResizedCrop(size, scale=SCALE, ratio=RATIO),
                             transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = torchvision.datasets.ImageFolder(folder, transform=tf)
    loader = TimedBatches(DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers))
    model = torchvision.models.resnet18(num_classes=len(ds.classes))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    secs, data_secs = [], []
    for _ in range(epochs):
        model.train()
        t0, d0 = time.perf_counter(), loader.data_seconds
        for x, y in loader:
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x), y).backward()
            opt.step()
        secs.append(time.perf_counter() - t0)
        data_secs.append(loader.data_seconds - d0)
    return {"n": len(ds), "epoch_seconds": secs, "data_seconds": data_secs}


def side_main(args) -> None:
    with PeakMemory() as mem:
        if args.side == "deeprecipe":
            out = run_deeprecipe(args.folder, args.size, args.epochs, args.batch_size, args.threads)
        else:
            out = run_reference(args.folder, args.size, args.epochs, args.batch_size, args.threads, args.workers)
    out["peak_mb"] = mem.peak_kb / 1024
    print("RESULT " + json.dumps(out))


# ------------------------------------------------------------------------------------------ driver
def summarise(r: dict) -> dict:
    n, secs, data = r["n"], r["epoch_seconds"], r["data_seconds"]
    later = secs[1:] or secs
    return {"first_epoch_ips": n / secs[0], "later_epochs_ips": n * len(later) / sum(later),
            "data_share": sum(data[1:] or data) / sum(later), "peak_mb": r["peak_mb"]}


def run_side(side: str, folder: Path, size: int, args, cache: Path) -> dict:
    env = {**os.environ, "DEEPRECIPE_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--side", side, "--folder", str(folder), "--size", str(size),
           "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
           "--workers", str(args.workers)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} at {size} px failed:\n{proc.stderr[-3000:]}")
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def table(rows: dict) -> str:
    lines = [f"{'size':>5} {'side':<11} {'epoch 1 img/s':>14} {'later img/s':>12} {'data share':>11} {'peak MB':>8}"]
    for size, sides in rows.items():
        for side in ("deeprecipe", "reference"):
            s = sides[side]["summary"]
            lines.append(f"{size:>5} {side:<11} {s['first_epoch_ips']:>14.1f} {s['later_epochs_ips']:>12.1f} "
                         f"{100 * s['data_share']:>10.0f}% {s['peak_mb']:>8.0f}")
        r = sides["ratio"]
        lines.append(f"{size:>5} {'dr / ref':<11} {r['first_epoch_ips']:>13.2f}× {r['later_epochs_ips']:>11.2f}× "
                     f"{'':>11} {r['peak_mb']:>7.2f}×")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=1000)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--megapixels", type=float, nargs=2, default=(1.0, 8.0))
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="the reference's DataLoader workers")
    p.add_argument("--folder", help="use (or build, if absent) the photo folder here")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--side", choices=["deeprecipe", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        return side_main(args)
    from benchmarks.photo_folder import make_photo_folder
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.folder or Path(tmp) / "photos")
        if not folder.exists():
            t0 = time.perf_counter()
            make_photo_folder(folder, args.files, args.classes, tuple(args.megapixels))
            print(f"built {args.files} JPEGs ({args.megapixels[0]:g}–{args.megapixels[1]:g} MP, {args.classes} classes) "
                  f"in {time.perf_counter() - t0:.0f}s", flush=True)
        rows = {}
        for size in args.sizes:
            rows[size] = {}
            for side in ("deeprecipe", "reference"):
                cache = Path(tmp) / f"cache-{size}"  # empty: deeprecipe's first epoch decodes everything
                r = run_side(side, folder, size, args, cache)
                rows[size][side] = {"raw": r, "summary": summarise(r)}
                print(f"{size} px {side}: {json.dumps(rows[size][side]['summary'])}", flush=True)
            d, ref = rows[size]["deeprecipe"]["summary"], rows[size]["reference"]["summary"]
            rows[size]["ratio"] = {k: d[k] / ref[k] for k in ("first_epoch_ips", "later_epochs_ips", "peak_mb")}
            if args.json:  # after every size, so a long run keeps what it measured
                result = {"machine": machine(), "load_average": os.getloadavg(),
                          "args": {k: v for k, v in vars(args).items() if k not in ("side", "size")}, "results": rows}
                Path(args.json).write_text(json.dumps(result, indent=1))
    print(table(rows))


def machine() -> str:
    try:
        model = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                     if l.startswith("model name"))
    except (OSError, StopIteration):
        model = "unknown CPU"
    return f"{os.cpu_count()} cores, {model}"


if __name__ == "__main__":
    main()
