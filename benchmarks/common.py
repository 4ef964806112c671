"""Small helpers the benchmark scripts share: output, the --limit subsetting, per-epoch test accuracy."""
from __future__ import annotations

import json
import time
from pathlib import Path


def limit_parts(parts: dict, limit: int | None) -> dict:
    """At most `limit` indices per split, spread over the (sorted) split so every class appears."""
    if not limit:
        return parts
    return {k: v[::max(1, len(v) // limit)][:limit] for k, v in parts.items()}


def emit(result: dict, dest: str | None) -> None:
    """Write the result as JSON to `dest`, or print it."""
    text = json.dumps(result, indent=1)
    if dest:
        Path(dest).write_text(text)
    else:
        print(text)


def timed_epoch(loader, step) -> tuple[int, float, float]:
    """One pass of `step(x, y)` over `loader`: (images, seconds spent producing batches, seconds in all)."""
    seen, data_seconds, step_seconds = 0, 0.0, 0.0
    batches = iter(loader)
    while True:
        t_fetch = time.perf_counter()
        try:
            x, y = next(batches)
        except StopIteration:
            return seen, data_seconds, step_seconds
        t_step = time.perf_counter()
        step(x, y)
        data_seconds += t_step - t_fetch
        step_seconds += time.perf_counter() - t_fetch
        seen += len(y)


class EpochTestAccuracy:
    """A trainer `on_epoch_end` hook: the test accuracy after every epoch, measured off the clock.

    Each row has `seconds` (training and validation since `start()`, the test passes left out) and
    `epoch_seconds` (that epoch's share). With `stop_after`, training stops after that epoch: a screen of a
    run's first epochs under the full run's schedule.
    """

    def __init__(self, test_loader, stop_after: int | None = None):
        self.test_loader, self.stop_after = test_loader, stop_after
        self.history: list[dict] = []
        self.started = self.last = self.off = 0.0

    def start(self) -> None:
        self.started = self.last = time.perf_counter()
        self.off = 0.0

    def seconds(self) -> float:
        """Seconds on the clock since `start()` (the test passes left out)."""
        return time.perf_counter() - self.started - self.off

    def __call__(self, trainer, row: dict) -> None:
        entered = time.perf_counter()
        self.history.append({"epoch": row["epoch"], "seconds": entered - self.started - self.off,
                             "epoch_seconds": entered - self.last, "val_acc": row.get("val_acc"),
                             "test_acc": trainer.evaluate(self.test_loader)["acc"]})
        if self.stop_after and row["epoch"] >= self.stop_after:
            trainer.state.stopped_early = True
        self.last = time.perf_counter()
        self.off += self.last - entered
