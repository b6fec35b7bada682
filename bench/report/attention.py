""""Needs attention" grouped by kind: one explanation per kind, then each case with what is particular to it."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.report.data import Warnings
from bench.measure.stats import CV_WARNING, SHORT_SAMPLE_MS

WARNING_KINDS = {
    "contaminated": "other work ran on the case's CPUs while it was measured: rerun it on a quiet machine.",
    "unstable": "its rounds disagreed more than the run's other cases' rounds did (measured in a single round: its"
    f" samples spread more than {CV_WARNING:.0%} of their mean): rerun it, or give the suite more measure.rounds.",
    "imprecise": "the median's 95% interval did not reach measure.target_ci before measure.max_seconds: raise it.",
    "capped": "fewer than measure.min_iterations calls fit in measure.max_seconds: raise it for a firmer number.",
    "busy before": "the case's CPUs were still busy with other processes when it started (after --quiet-wait):"
    " its numbers may be slower than on a quiet machine.",
    "short samples": f"calls under {SHORT_SAMPLE_MS:g} ms, where timer and scheduling noise weigh:"
    " use a larger batch or sequence.",
}


@dataclass
class Group:
    kind: str
    title: str
    explanation: str
    severity: str
    """bad (failed, wrong outputs) or warn (the measurement is weaker than asked)"""
    items: list[tuple[str, str]] = field(default_factory=list)
    """(case_id, what is particular to this case)"""


def warning_kind(text: str) -> tuple[str, str]:
    """(kind, detail): the kind a warning opens with and its particulars, without the advice its kind repeats."""
    if text.startswith("CPUs ") and " were busy before the case " in text:
        return "busy before", text
    if text.startswith("unstable across rounds: "):
        return "unstable", text.removeprefix("unstable ").split("; ")[0]
    head, sep, rest = text.partition(": ")
    if sep and head in WARNING_KINDS:
        return head, rest.split("; ")[0]
    return "other", text


def groups(found: Warnings) -> list[Group]:
    """The non-empty groups, failures first."""
    out = [
        Group("failed", "Failed", "no measurement: the worker's status and reason (its log's last lines in the HTML"
              " report).", "bad", [(c, f"{s}: {r}") for c, s, r in found.failed]),
        Group("unsupported", "Not supported or not measured", "the backend's own maker declines this model or task,"
              " or this CPU cannot run the precision or only emulates it (their words), with the equivalent"
              " configuration where there is one; not a failure of the run.", "warn",
              list(found.unsupported)),
        Group("accuracy", "Fails accuracy", "outputs differ from eager fp32 beyond the tolerance: no speedup, not"
              " ranked.", "bad", list(found.accuracy)),
        Group("faster-but-failing", "Faster, but fails accuracy", "faster than every passing configuration of its"
              " shape: it would change the verdict if its outputs were acceptable.", "bad",
              [(c, "") for c, _ in found.faster_but_failing]),
        Group("not-compared", "Not compared", "measured and accurate, but not trusted: no speedup, not ranked, no %"
              " of peak.", "warn", [(c, t.split(":")[0]) for c, t in found.untrusted]),
    ]  # fmt: skip
    by_kind = {k: Group(k.replace(" ", "-"), k.capitalize(), why, "warn") for k, why in WARNING_KINDS.items()}
    by_kind["other"] = Group("other", "Other warnings", "as the worker or backend reported them.", "warn")
    for case_id, text in found.measurement:
        kind, detail = warning_kind(text)
        by_kind[kind].items.append((case_id, detail))
    return [g for g in out + list(by_kind.values()) if g.items]
