"""deeprecipe's default training run, instrumented for the benchmark (the product is not changed).

It follows `deeprecipe.api.train` step by step (Session → trainer → fit → finish_run, run folder,
checkpoints and all) and adds two things from outside: an `on_epoch_end` hook that measures test
accuracy after every epoch (off the clock), and a timing wrapper around the training loader that
splits step time into "producing the batch" and "the rest".

    python benchmarks/deeprecipe_run.py --json out.json [--epochs N] [--limit N] [--set train.precision=fp32 ...]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's deeprecipe, not an installed one
from benchmarks.common import EpochTestAccuracy, emit, limit_parts  # noqa: E402
from deeprecipe.api import finish_run
from deeprecipe.session import Session, prepare_data
from deeprecipe.config import resolve_config


class TimedLoader:
    """Wraps a loader; counts seconds spent producing batches and seconds spent in whole epochs."""

    def __init__(self, loader):
        self.loader = loader
        self.data_seconds = 0.0
        self.step_seconds = 0.0
        self.images = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name):  # set_epoch, batch_size, ... go to the wrapped loader
        return getattr(self.loader, name)

    def __iter__(self):
        batches = iter(self.loader)
        start = time.perf_counter()
        while True:
            t = time.perf_counter()
            try:
                x, y = next(batches)
            except StopIteration:
                break
            self.data_seconds += time.perf_counter() - t
            self.images += x.shape[0]
            yield x, y
        self.step_seconds += time.perf_counter() - start


def limit_splits(data, limit: int | None):
    data.splits = limit_parts(data.splits, limit)
    return data


def train(overrides: list[str], limit: int | None = None) -> dict:
    cfg = resolve_config(None, overrides)
    session = Session.create(cfg, limit_splits(prepare_data(cfg), limit))
    run_dir = Path(tempfile.mkdtemp(prefix="deeprecipe-bench-"))
    trainer = session.make_trainer(run_dir, show_progress=False)
    timed = TimedLoader(trainer.train_loader)
    trainer.train_loader = timed
    test_loader = session.data.loader("test", cfg, session.device, channels_last=session.channels_last)
    tests = EpochTestAccuracy(test_loader)  # off the clock: only the time-to-accuracy measurement needs it
    trainer.hooks["on_epoch_end"].append(tests)
    tests.start()
    trainer.fit()
    seconds, history = tests.seconds(), tests.history
    summary = finish_run(trainer, session, run_dir, seconds)
    return {"pipeline": "deeprecipe", "test_acc": summary["test_acc"], "last_epoch_test_acc": history[-1]["test_acc"],
            "seconds": seconds, "history": history, "train_images": timed.images,
            "train_images_per_second": timed.images / max(timed.step_seconds, 1e-9),
            "data_seconds": timed.data_seconds, "step_seconds": timed.step_seconds,
            "threads": torch.get_num_threads(), "precision": session.precision,
            "channels_last": session.channels_last, "overrides": overrides, "run_dir": str(run_dir)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=None, help="default: deeprecipe's train.epochs")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N images of each split (smoke tests)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    overrides = list(args.overrides) + ([f"train.epochs={args.epochs}"] if args.epochs else [])
    result = train(overrides, args.limit)
    emit(result, args.json)


if __name__ == "__main__":
    main()
