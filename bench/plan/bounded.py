"""Reading a file a user names, never more of it than a limit: a huge file is refused, not loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def read_bounded(path: Path, limit: int, problem: Callable[[str], Exception], readable: str, small: str) -> bytes:
    """The file's bytes; `problem("expected ...")` is raised when it cannot be read (expected `readable`, got why)
    or holds more than `limit` bytes (expected `small`)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise problem(f"expected {readable}, got {exc.strerror or exc}") from None
    if len(data) > limit:
        raise problem(f"expected {small}")
    return data
