"""How complete a run is: the cases its manifest planned against the rows it has (measured, failed, not run)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.job import NOT_MEASURED, UNSUPPORTED
from bench.text import plural

MAX_NAMED = 10


def planned_cases(manifest: dict) -> list[str] | None:
    """The manifest's planned case ids, or None when it has no usable list (then only rows can be counted)."""
    planned = manifest.get("planned_cases")
    if isinstance(planned, list) and all(isinstance(c, str) for c in planned):
        return planned
    return None


@dataclass
class Completeness:
    planned: list[str] | None
    """case ids the run planned; None when the manifest does not say"""
    rows: list[dict]
    """the last row of each case"""

    @classmethod
    def of(cls, manifest: dict, rows: list[dict]) -> Completeness:
        return cls(planned_cases(manifest), rows)

    @property
    def measured(self) -> int:
        return sum(r["status"] == "ok" for r in self.rows)

    @property
    def passing(self) -> int:
        return sum(r["status"] == "ok" and bool((r.get("accuracy") or {}).get("passed")) for r in self.rows)

    @property
    def unsupported(self) -> int:
        return sum(r["status"] == UNSUPPORTED for r in self.rows)

    @property
    def not_measured(self) -> int:
        return sum(r["status"] == NOT_MEASURED for r in self.rows)

    @property
    def failed(self) -> int:
        return len(self.rows) - self.measured - self.unsupported - self.not_measured

    @property
    def not_run(self) -> list[str]:
        have = {r["case_id"] for r in self.rows}
        return [c for c in self.planned or [] if c not in have]

    @property
    def complete(self) -> bool:
        return not self.not_run

    def summary(self) -> str:
        counts = f"{self.measured} measured ({self.passing} passing the accuracy check), {self.failed} failed"
        counts += f", {self.unsupported} not supported by their backend or this CPU" if self.unsupported else ""
        counts += f", {self.not_measured} not measured (emulated or kept fp32 on this CPU)" if self.not_measured else ""
        if self.planned is None:
            return f"{len(self.rows)} {plural('case', len(self.rows))}: {counts} (the manifest lists no planned cases)."
        planned = len(self.planned)
        return f"{planned} planned {plural('case', planned)}: {counts}, {len(self.not_run)} not run."

    def missing_names(self, limit: int = MAX_NAMED) -> str:
        """The cases with no row, at most `limit` of them named."""
        missing = self.not_run
        more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
        return ", ".join(missing[:limit]) + more

    def missing_text(self) -> str:
        return f"not run ({len(self.not_run)} of {len(self.planned or [])} planned): {self.missing_names()}"
