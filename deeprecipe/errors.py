"""The one exception a user sees: a short message plus how to fix it."""
from __future__ import annotations

import difflib
from typing import Iterable


class DeepRecipeError(Exception):
    """A user-facing failure: printed as one line (message and fix), exit code 2."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message


def did_you_mean(name: str, choices: Iterable[str], otherwise: str, prefix: str = "") -> str:
    """The fix for an unknown name: the nearest valid ones (difflib), each written after `prefix`
    (e.g. "optim."), or `otherwise` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.5)
    return f"did you mean {', '.join(prefix + c for c in close)}?" if close else otherwise
