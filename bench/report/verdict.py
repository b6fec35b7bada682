"""The verdict section as cells and as Markdown that can be pasted into a pull request as it is."""

from __future__ import annotations

from bench.results.verdict import Choice, ModelVerdict
from bench.text import plural

HEADER = [
    "", "configuration", "fastest or tied at", "speedup over baseline", "accuracy margin", "prepare",
    "peak memory", "environment", "extra dependencies",
]  # fmt: skip
INTRO = (
    "Per model: the configuration to ship (fastest or tied with the fastest, among the trusted cases that pass the"
    " accuracy check, at the most shapes) and the fastest that keeps fp32 outputs, with what each costs. Tied: for"
    " paired cases, the paired test does not show the fastest 2% faster at 95%; otherwise the medians' 95% intervals"
    " overlap. Either way the two cannot be told apart here."
)


def duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms < 1:
        return "under 1 ms"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def speedup_range(choice: Choice) -> str:
    if not choice.speedups:
        return "-"
    low, high = min(choice.speedups), max(choice.speedups)
    return f"{low:.2f}x" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}x–{high:.2f}x"


def choice_cells(title: str, choice: Choice | None, shapes: int) -> list[str]:
    if choice is None:
        return [title, "none: no trusted case passes", *["-"] * (len(HEADER) - 2)]
    memory = choice.peak_mb()
    return [
        title, choice.label, f"{len(choice.wins)} of {shapes} {plural('shape', shapes)}",
        speedup_range(choice), choice.margin(), duration(choice.prepare_ms()),
        "-" if memory is None else f"{memory:.0f} MB", choice.environment, choice.dependencies,
    ]  # fmt: skip


def notes(verdict: ModelVerdict) -> list[str]:
    """Where each choice is not the fastest, and whether shipping already keeps fp32 outputs."""
    found = []
    for title, choice in (("Ship", verdict.ship), ("Fastest fp32", verdict.fp32)):
        if choice and choice.rivals:
            found.append(
                f"{title} {choice.label} is tied with {', '.join(choice.rivals)}: fastest or tied at as many shapes, so"
                " this run cannot rank them; the choice among them went to outright wins, then the lower total"
                " median, and another run may choose another of them."
            )
        if choice and choice.losses:
            where = "; ".join(f"{shape} (fastest there: {best})" for shape, best in choice.losses)
            found.append(f"{title} {choice.label} is not fastest or tied at: {where}.")
    if verdict.undecided:
        found.append(f"No case is trusted and passing at: {'; '.join(verdict.undecided)} (see Needs attention).")
    ship, fp32 = verdict.ship, verdict.fp32
    if ship and fp32 and ship.label == fp32.label:
        found.append(f"Shipping {ship.label} keeps fp32 outputs: no accuracy trade.")
    elif ship and fp32 is None:
        found.append("No fp32 configuration is trusted and passing.")
    return found


def cells(verdict: ModelVerdict) -> list[list[str]]:
    return [
        choice_cells("ship", verdict.ship, verdict.shapes),
        choice_cells("fastest fp32", verdict.fp32, verdict.shapes),
    ]


def markdown_lines(verdicts: list[ModelVerdict], cell, heading: str = "##") -> list[str]:
    """The section in Markdown; `cell` escapes one suite or result text."""
    lines = [f"{heading} Verdict", "", cell(INTRO), ""]
    if not verdicts:
        return lines + ["No case was measured.", ""]
    for verdict in verdicts:
        lines += [f"{heading}# {cell(verdict.model)} ({cell(verdict.task)})", ""]
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in cells(verdict)]
        lines += [""] + [f"- {cell(note)}" for note in notes(verdict)]
        lines += [""] if notes(verdict) else []
    return lines
