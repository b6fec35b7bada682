"""Which rows may be compared, and the comparisons: speedup over the baseline with its interval, fastest or tied.

A row is trusted when it was measured, passes its accuracy check, and nothing says its median is off: the
interference meter did not find it contaminated, its rounds agree, and (measured in one round) its samples' CV is
within CV_WARNING.
Only trusted rows give or take a speedup, are ranked fastest, or are rated against the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.environments import MAIN
from bench.measure import paired
from bench.measure.intervals import median_interval
from bench.measure.stats import CV_WARNING

SHAPE_KEYS = ("model", "task", "seq_len", "batch_size", "threads", "padding_ratio", "new_tokens", "texts")
"""new_tokens: a generation row's tokens per call; a forward-pass row has none (None), its Case 0. texts: a pipeline
row's text set."""


def shape_key(row: dict) -> tuple:
    """What a speedup is measured at: the same model, task, shape and threads as its baseline, and the same
    machine when the row names one (rows gathered from several machines by `bench merge`)."""
    machine = machine_of(row)
    return tuple(row.get(k) for k in SHAPE_KEYS) + ((machine,) if machine else ())


def machine_of(row: dict) -> str | None:
    """The host a row was measured on, when the row says (merged rows do); None otherwise."""
    machine = row.get("machine")
    return str(machine.get("hostname")) if isinstance(machine, dict) and machine.get("hostname") else None


def environment_of(row: dict) -> str:
    return row.get("environment") or MAIN


def baseline_key(row: dict) -> tuple:
    """A baseline stands for one environment at one shape: a row is divided by its own environment's."""
    return (environment_of(row), *shape_key(row))


def measured(row: dict) -> bool:
    return row.get("status") == "ok" and bool(row.get("latency_ms"))


DRIFT_BETWEEN_ROUNDS = "unstable"
"""The reason a row's rounds disagree: it refuses comparisons of medians, not paired ones (pair_distrust)."""


def without_drift(reasons: list[str]) -> list[str]:
    return [r for r in reasons if r != DRIFT_BETWEEN_ROUNDS]


def distrust_reasons(row: dict) -> list[str]:
    """Why the row's median must not be compared, in a word or two each; empty when it may be."""
    if not measured(row):
        return [str(row.get("status") or "not measured")]
    reasons = []
    if not (row.get("accuracy") or {}).get("passed"):
        reasons.append("fails accuracy")
    if (row.get("interference") or {}).get("contaminated"):
        reasons.append("contaminated")
    if (row.get("rounds_agreement") or {}).get("verdict") == "unstable" or spread_too_wide(row):
        reasons.append(DRIFT_BETWEEN_ROUNDS)
    return reasons


def pair_distrust(row: dict, baseline: dict) -> tuple[list[str], list[str]]:
    """(the row's reasons, the baseline's) not to compare them. Rows paired with each other keep every reason but
    the spread between rounds: a level the machine held in one round is shared by both sides' blocks there, and
    the paired interval carries what is left of it (bench.measure.paired)."""
    own, theirs = distrust_reasons(row), distrust_reasons(baseline)
    entry = row.get("paired") or {}
    if entry.get("baseline") == baseline.get("case_id") and any(entry.get("log_speedups") or []):
        return without_drift(own), without_drift(theirs)
    return own, theirs


def spread_too_wide(row: dict) -> bool:
    """A single worker's samples spread beyond CV_WARNING. Over several rounds the spread includes the drift between
    them, which the row's interval carries; there the rounds' agreement decides. Under load (offline, server) calls
    spread by what the load does: not judged."""
    if (row.get("scenario") or "single-stream") != "single-stream":
        return False
    return rounds_of(row) is None and (row["latency_ms"].get("cv") or 0) > CV_WARNING


def row_is_trusted(row: dict) -> bool:
    return not distrust_reasons(row)


def rounds_of(row: dict) -> list[list[float]] | None:
    """Each round's samples, when the row was measured in several rounds."""
    rounds = row.get("round_samples_ms")
    if not isinstance(rounds, list) or len(rounds) < 2:
        return None
    return rounds if all(isinstance(samples, list) for samples in rounds) else None


def median_ci(row: dict) -> list[float] | None:
    """The row's 95% interval for its median: as recorded, or from its samples for rows written without one."""
    if not measured(row):
        return None
    latency = row["latency_ms"]
    if "median_ci" in latency:
        return latency["median_ci"]
    samples = row.get("samples_ms")
    return median_interval(samples, rounds_of(row))["median_ci"] if samples else None


def overlaps(a: list[float] | None, b: list[float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


@dataclass(frozen=True)
class Speedup:
    """A row against its baseline: the ratio of medians and its interval, or why there is none."""

    ratio: float | None = None
    interval: tuple[float, float] | None = None
    refused: str | None = None
    is_baseline: bool = False
    paired: dict | None = None
    """bench.measure.paired's figures, when the ratio is paired: its processes, pairs and degrees of freedom."""

    @property
    def verdict(self) -> str:
        """baseline, refused, unknown (no interval), same (the interval contains 1), faster or slower."""
        if self.is_baseline or self.refused:
            return "baseline" if self.is_baseline else "refused"
        if self.interval is None:
            return "unknown"
        low, high = self.interval
        return "same" if low <= 1 <= high else "faster" if low > 1 else "slower"

    @property
    def shown(self) -> float | None:
        """The ratio, when it may be shown as a speedup."""
        return None if self.refused else self.ratio

    def text(self) -> str:
        if self.refused:
            return f"— {self.refused}"
        if self.is_baseline:
            return "1.00x (baseline)"
        if self.interval is None:
            return f"{self.ratio:.2f}x (no interval)"
        bounds = f"[{self.interval[0]:.2f}, {self.interval[1]:.2f}]"
        return f"≈ {self.ratio:.2f}x {bounds}" if self.verdict == "same" else f"{self.ratio:.2f}x {bounds}"


def baselines(rows: list[dict]) -> dict[tuple, dict]:
    """The baseline row of each environment and shape (see baseline_key); a trusted one when there are several."""
    found: dict[tuple, dict] = {}
    for row in rows:
        if row.get("baseline"):
            key = baseline_key(row)
            current = found.get(key)
            if current is None or (not row_is_trusted(current) and row_is_trusted(row)):
                found[key] = row
    return found


def speedup(row: dict, baseline: dict | None) -> Speedup | None:
    """The baseline's median over the row's, with an interval; None when the row was not measured or has no baseline.

    The interval runs from baseline low / row high to baseline high / row low: it holds the true ratio whenever
    both medians' 95% intervals hold theirs, and it contains 1 exactly when those intervals overlap.
    """
    if baseline is None or not measured(row):
        return None
    own, theirs = pair_distrust(row, baseline)
    if own or theirs:
        return Speedup(refused=", ".join(own) if own else "baseline " + ", ".join(theirs))
    if row is baseline or row.get("case_id") == baseline.get("case_id"):
        return Speedup(ratio=1.0, is_baseline=True)
    ratio = baseline["latency_ms"]["median"] / row["latency_ms"]["median"]
    mine, base = median_ci(row), median_ci(baseline)
    if mine is None or base is None or mine[0] <= 0:
        return Speedup(ratio=ratio)
    return Speedup(ratio=ratio, interval=(base[0] / mine[1], base[1] / mine[0]))


def speedups(rows: list[dict]) -> dict[str, Speedup | None]:
    """Every row's speedup over the baseline of its own environment at its shape, by case_id: paired (the geometric
    mean of its pass ratios, bench.measure.paired) where it was measured against that baseline, else from medians."""
    base = baselines(rows)
    found = {row["case_id"]: speedup(row, base.get(baseline_key(row))) for row in rows}
    for case_id, ratio in paired_speedups(rows, base).items():
        if found.get(case_id) is not None and found[case_id].ratio is not None and not found[case_id].is_baseline:
            found[case_id] = Speedup(ratio=ratio.ratio, interval=ratio.interval, paired=ratio.to_dict())
    return found


def paired_rounds(row: dict, baseline: dict | None) -> paired.Rounds | None:
    """The row's pass log speedups by process round, when it was paired with `baseline`."""
    entry = row.get("paired") or {}
    if baseline is None or entry.get("baseline") != baseline.get("case_id") or not entry.get("log_speedups"):
        return None
    rounds = paired.Rounds.of(entry["log_speedups"])
    return rounds if rounds.means else None


def paired_speedups(rows: list[dict], base: dict[tuple, dict]) -> dict[str, paired.PairedRatio]:
    """Each paired row's ratio, its variance moderated towards that of every paired row given (limma style)."""
    comparisons = {}
    for row in rows:
        if measured(row):
            rounds = paired_rounds(row, base.get(baseline_key(row)))
            if rounds is not None:
                comparisons[row["case_id"]] = rounds
    return paired.ratios(comparisons) if comparisons else {}


def speedups_vs_main(rows: list[dict]) -> dict[str, Speedup | None]:
    """The cross-environment ratio: each row of an environment other than main over main's baseline at its shape
    (a change of library included); None for main's own rows, whose speedup already is this."""
    base = baselines(rows)
    return {
        row["case_id"]: None if environment_of(row) == MAIN else speedup(row, base.get((MAIN, *shape_key(row))))
        for row in rows
    }


def fastest_or_tied(rows: list[dict]) -> tuple[dict | None, list[dict]]:
    """Among the trusted rows of one shape: the fastest, and the others tied with it.

    Rows paired with one baseline (bench.measure.paired) are ranked by the paired test: tied unless the fastest is
    shown more than paired.TIE_MARGIN faster. Otherwise tied means their medians' intervals overlap.
    """
    ranked = paired_ranking(paired_trusted(rows))
    if ranked is not None:
        return ranked
    trusted = [r for r in rows if row_is_trusted(r)]
    if not trusted:
        return None, []
    best = min(trusted, key=lambda r: r["latency_ms"]["median"])
    best_ci = median_ci(best)
    return best, [r for r in trusted if r is not best and overlaps(best_ci, median_ci(r))]


def paired_resolution(rows: list[dict]) -> dict[tuple, list[float]]:
    """The half-widths of the paired speedup intervals, by shape (model, seq_len, batch_size, threads, padding)."""
    found: dict[tuple, list[float]] = {}
    for case_id, ratio in speedups(rows).items():
        if ratio is not None and ratio.paired and ratio.interval:
            row = next(r for r in rows if r["case_id"] == case_id)
            key = tuple(row.get(k) for k in ("model", "seq_len", "batch_size", "threads", "padding_ratio"))
            low, high = ratio.interval
            found.setdefault(key, []).append(max(ratio.ratio - low, high - ratio.ratio) / ratio.ratio)
    return found


def resolution_by_shape(rows: list[dict]) -> list[tuple[tuple, int, float]]:
    """(shape, how many paired speedups, their median half-width) per shape, in a stable order; [] when none."""
    import statistics

    found = paired_resolution(rows)
    return [(key, len(widths), statistics.median(widths)) for key, widths in sorted(found.items(), key=lambda i: str(i[0]))]


def paired_trusted(rows: list[dict]) -> list[dict]:
    """The rows of one shape that may enter the paired test: the baseline and the rows paired with it, each without a
    reason against the pair (pair_distrust)."""
    baseline = next((r for r in rows if (r.get("paired") or {}).get("role") == "baseline"), None)
    if baseline is None:
        return []
    if without_drift(distrust_reasons(baseline)):
        return []
    return [baseline] + [r for r in rows if r is not baseline and measured(r) and not pair_distrust(r, baseline)[0]]


def paired_ranking(trusted: list[dict]) -> tuple[dict, list[dict]] | None:
    """(fastest, tied) by the paired test, when every row was paired with the same baseline, which is among them."""
    baseline = next((r for r in trusted if (r.get("paired") or {}).get("role") == "baseline"), None)
    if baseline is None or len({environment_of(r) for r in trusted}) > 1:
        return None
    comparisons = {}
    for row in trusted:
        rounds = paired_rounds(row, baseline)
        if rounds is None and row is not baseline:
            return None
        comparisons[row["case_id"]] = rounds
    processes = max((len(r.means) for r in comparisons.values() if r is not None), default=0)
    if not processes:
        return None
    comparisons[baseline["case_id"]] = paired.Rounds((0.0,) * processes, (0,) * processes)
    best, tied = paired.tied_with_fastest(comparisons)
    by_id = {r["case_id"]: r for r in trusted}
    return by_id[best], [by_id[key] for key in tied]


def main_baseline_label(rows: list[dict]) -> str:
    """How the cross-environment column is headed: main's eager fp32, with the torch it ran on when recorded."""
    for row in rows:
        if row.get("baseline") and environment_of(row) == MAIN:
            torch = ((row.get("effective") or {}).get("versions") or {}).get("torch")
            if torch:
                return f"vs eager fp32 (main, torch {torch})"
    return "vs eager fp32 (main)"
