"""Errors the CLI turns into a one-line message and exit code 2 (bad input)."""

MAX_LINE = 400
MAX_PROBLEMS = 20


class BenchError(Exception):
    """Bad input: printed as one line, exit code 2, no traceback."""


class SuiteError(BenchError):
    """A suite file that does not validate; carries every problem found, one per line (bounded in number and length)."""

    def __init__(self, file: str, problems: list[str]):
        self.file = file
        self.problems = problems
        lines = [shorten(f"{file}: {p}", MAX_LINE) for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"{file}: ... and {len(problems) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(lines))


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters, on one line: never echo a huge or multi-line value."""
    text = " ".join(text.splitlines())
    return text if len(text) <= limit else text[: limit - 3] + "..."
