"""Small helpers the benchmark scripts share: output and the --limit subsetting."""
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
