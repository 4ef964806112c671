"""Progress bars with rich: live on a terminal, silent when output is piped or in CI."""
from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")


def is_interactive() -> bool:
    return sys.stderr.isatty()


def track(items: Iterable[T], description: str = "", total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on a TTY; plain iteration otherwise (logs stay readable)."""
    if not is_interactive():
        yield from items
        return
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
