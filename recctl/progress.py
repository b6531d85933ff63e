"""How library code reports progress without printing.

Library functions take an optional ``progress`` callable; the CLI passes one that drives a
Rich progress bar on stderr, a notebook may pass its own, and ``None`` means silence.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["Progress", "report"]


class Progress(Protocol):
    """Called as ``progress(task, completed, total)``; ``total=None`` for an unknown total."""

    def __call__(self, task: str, completed: float, total: float | None = None) -> None:
        """Report that ``completed`` of ``total`` units of ``task`` are done."""


def report(progress: Progress | None, task: str, completed: float, total: float | None = None) -> None:
    """Call ``progress`` if one was given."""
    if progress is not None:
        progress(task, completed, total)
