"""Errors the CLI turns into a one-line message and exit code 2 (bad input)."""


class BenchError(Exception):
    """Bad input: printed as one line, exit code 2, no traceback."""


class SuiteError(BenchError):
    """A suite file that does not validate; carries every problem found, one per line."""

    def __init__(self, file: str, problems: list[str]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(f"{file}: {p}" for p in problems))
