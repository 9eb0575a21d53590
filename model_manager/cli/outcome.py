"""What a command hands back to the entry point besides its data: an exit code, or a usage error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """A command's data with a non-zero exit code (``cache verify`` that found bad entries)."""

    data: Any
    code: int = 0


class UsageError(Exception):
    """Arguments that parse but cannot work (an output suffix nothing can write): exit 2, one line."""
