"""Small helpers the benchmark scripts share: output and the --limit subsetting."""
from __future__ import annotations

import json
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
