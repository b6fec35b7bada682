"""The rich console the comparison commands print their tables to."""

from __future__ import annotations

WIDTH_OFF_TERMINAL = 160
"""Printed to a log or a pipe, a table keeps this width instead of folding its cells at 80 columns."""


def console():
    from rich.console import Console

    found = Console()
    return found if found.is_terminal else Console(width=WIDTH_OFF_TERMINAL)
