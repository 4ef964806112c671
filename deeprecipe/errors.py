"""The one exception a user sees: a short message plus how to fix it."""
from __future__ import annotations


class DeepRecipeError(Exception):
    """A user-facing failure: printed as one line (message and fix), exit code 2."""

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message} — {self.fix}" if self.fix else self.message
