"""Wording shared by messages, tables and reports."""

from __future__ import annotations


def plural(word: str, count: int) -> str:
    return word if count == 1 else word + "s"
