"""What `bench tune` found (bench.run.tune), from its rows: per shape, the configuration that serves the most queries a
second with p99 under the budget, what that cost in trials and seconds, and how sure it is."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.backends.precision_mode import row_label
from bench.results.offline import split_text

SHAPE = ("model", "task", "seq_len", "batch_size", "padding_ratio")
AXES = ("seq_lens", "batch_sizes", "threads", "precisions", "padding_ratios", "streams", "rates", "concurrency")
"""A suite level's axes: a tuned suite sets the winner's in its defaults, and no model or backend overrides them."""


CLOSE = "not ahead by more than the precision"
"""A candidate that cannot beat the best by more than the search's precision: by its bound, or not VALID at the
best × (1 + precision). A probe at the best rate itself cannot tell it tied from behind on a drifting machine (the
knee moves with the machine's speed); the duel's paired test can, and takes the closest of them."""


def duel_verdict(entry: dict, logs: list[float], better: str) -> dict:
    """A duel's ratio (the runner-up's figure over the winner's: the geometric mean of its pairs' ratios), the 95% t
    interval of the pairs' log ratios, and the verdict: "ahead" where the interval puts the winner ahead, "behind"
    where it puts the runner-up ahead, else "tied". `better` is "lower" for a figure such as a p99, "higher" for a
    goodput. At least two log ratios."""
    import math
    import statistics

    from scipy import stats

    mean, spread = statistics.fmean(logs), statistics.stdev(logs)
    half = stats.t.ppf(0.975, len(logs) - 1) * spread / math.sqrt(len(logs)) if spread > 0 else 0.0
    entry["ratio"] = round(math.exp(mean), 4)
    entry["interval"] = [round(math.exp(mean - half), 4), round(math.exp(mean + half), 4)]
    winner_margin = mean if better == "lower" else -mean
    entry["verdict"] = "ahead" if winner_margin - half > 0 else "behind" if winner_margin + half < 0 else "tied"
    return entry


def tuned_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("tune")]


def configuration(row: dict) -> str:
    batching = row.get("batching")
    batched = f", batches ≤{row.get('batch_size')} (wait {batching['max_wait_ms']:g} ms)" if batching else ""
    return f"{row.get('backend')} {row_label(row)} {split_text(row)}{batched}"


def shape_of(row: dict) -> tuple:
    """What the candidates serve: a dynamically batched case serves queries of one sample, as batch 1 does."""
    return tuple(1 if key == "batch_size" and row.get("batching") else row.get(key) for key in SHAPE)


def search_of(row: dict) -> dict:
    """A candidate's search: of its rate (`server`), or of its closed-loop users (`closed_loop`, bench tune --users)."""
    return ((row.get("server") or row.get("closed_loop") or {}).get("search")) or {}


def searches_users(row: dict) -> bool:
    return "max_users" in search_of(row)


def max_rate(row: dict) -> float | None:
    """What ranks candidates: the highest VALID rate, or a users search's goodput at its most users VALID."""
    search = search_of(row)
    return search.get("goodput_per_s") if "max_users" in search else search.get("max_rate")


def bracket(row: dict) -> tuple[float | None, float | None]:
    """The highest rate shown VALID and the lowest shown not, or a users search's most users VALID and fewest not
    (None: not reached)."""
    search = search_of(row)
    if "max_users" in search:
        return search.get("max_users"), search.get("lowest_failing_users")
    return search.get("max_rate"), search.get("lowest_failing_rate")


def bracket_cells(row: dict, low, high) -> list[str]:
    """The tuning table's two bracket cells: rates, or a users search's users (with its goodput)."""
    if searches_users(row):
        return [f"{low} users, {max_rate(row):.4g}/s" if low is not None else "-", f"{high} users" if high else "-"]
    return [f"{low:.4g}" if low is not None else "-", f"{high:.4g}" if high is not None else "-"]


def found_text(row: dict) -> str:
    """What a candidate's search found, as said: `190/s VALID (not at 209/s)`, or `6 users VALID (not 7), goodput
    3.1/s`."""
    low, high = bracket(row)
    if low is None:
        return "nothing VALID"
    if searches_users(row):
        return (f"{low} users VALID{f' (not {high})' if high else ''}, goodput {max_rate(row):.4g} queries/s within"
                " the budget")  # fmt: skip
    return f"{low:.4g} queries/s VALID{f' (not VALID at {high:.4g}/s)' if high else ''}"


def eligible(row: dict) -> bool:
    """Measured, within the accuracy gate, with a VALID rate: a configuration that may win."""
    return row.get("status") == "ok" and bool((row.get("accuracy") or {}).get("passed")) and max_rate(row) is not None


def p99_at_rate(row: dict) -> float | None:
    """The p99 from the scheduled time of an at-rate objective's one probe."""
    probes = ((row.get("server") or {}).get("search") or {}).get("probes") or [{}]
    return (probes[-1].get("latency_ms") or {}).get("p99")


def objective_key(p99: float | None, rss_mb: float | None, objective: str) -> tuple:
    """How an at-rate objective orders candidates, best first: memory, then p99; or p99, then memory."""
    p99 = p99 if p99 is not None else float("inf")
    rss = rss_mb or 0.0
    return (rss, p99) if objective == "memory" else (p99, rss)


def at_rate_key(row: dict, objective: str) -> tuple:
    return objective_key(p99_at_rate(row), row["tune"].get("rss_mb"), objective)


def p99_of(duel: dict) -> str:
    """What the duel compared: the p99 of the latency from the scheduled time, or of a generation search's TTFT or
    TPOT (bench.run.tune's duel); a users search's goodput."""
    if duel.get("figure") == "goodput":
        return "goodput"
    return f"{duel['figure']} p99" if duel.get("figure") else "p99"


def duel_load(duel: dict) -> str:
    """Where the duel ran: at the winner's rate, or with its users."""
    return f"with {duel['users']} users" if duel.get("users") else f"at {duel['rate']:.4g}/s"


def served_by_turns(duel: dict) -> str:
    """How the duel's two sides took turns: segments of their own schedules, or (runs before them) whole schedules."""
    if "segment_s" in duel:
        return f"{len(duel['pairs'])} segments of {duel['segment_s']:.3g} s served by turns"
    return f"{len(duel['pairs'])} pairs of the same schedule"


def slower_since(duel: dict) -> str:
    """Said when the winner, over its duel segments, was not VALID at the duel's rate, which its own probes had found
    VALID: the machine served less during the duel."""
    side = (duel.get("sides") or {}).get("winner") or {}
    if side.get("result") != "INVALID" or duel.get("verdict") == "behind":
        return ""
    return (f"; in the duel the winner itself was not VALID {duel_load(duel)} ({side['reason']}): the machine"
            " served less than in its own probes")


@dataclass
class ShapeOutcome:
    shape: tuple
    rows: list[dict]
    budget_ms: float | None
    """The p99 budget; None for a generation search's TTFT and TPOT budgets (`budget` says them)."""
    exhaustive: bool
    objective: str = "rate"
    rate: float | None = None
    """The rate an objective of latency or memory was asked at."""
    winner: dict | None = None
    runner_up: dict | None = None
    tied: list[dict] = field(default_factory=list)
    rate_leader: dict | None = None
    """Set when the duel overturned the rates: the configuration with the highest VALID rate, now the runner-up."""

    @property
    def trials(self) -> int:
        """Probes: the searches' and the duel's."""
        return sum(r["tune"].get("trials", 0) + (r["tune"].get("duel") or {}).get("trials", 0) for r in self.rows)

    @property
    def seconds(self) -> float:
        return sum(r["tune"].get("prepare_s", 0.0) + r["tune"].get("probe_s", 0.0)
                   + (r["tune"].get("duel") or {}).get("seconds", 0.0) for r in self.rows)  # fmt: skip

    @property
    def budget(self) -> str:
        """`p99 ≤ 100 ms`, or `TTFT ≤ 500 ms, TPOT ≤ 50 ms at p99`."""
        from bench.results.server import bounds_text

        return bounds_text(next(((r.get("search") or {}) for r in self.rows if r.get("search")), {}))

    @property
    def close(self) -> list[dict]:
        """Candidates that cannot beat the winner by more than the search's precision (bench.run.tune's CLOSE)."""
        return [r for r in self.rows if r is not self.winner and str(r["tune"].get("decision", "")).startswith(CLOSE)]

    @property
    def precision(self) -> float:
        return next((r["search"]["precision"] for r in self.rows if (r.get("search") or {}).get("precision")), 0.1)

    @property
    def duel(self) -> dict | None:
        return next((r["tune"]["duel"] for r in self.rows if r["tune"].get("duel")), None)

    def duel_text(self) -> str | None:
        """The paired test of the winner against the runner-up at the winner's rate (bench.run.tune's duel)."""
        duel = self.duel
        if not duel:
            return None
        against = next((configuration(r) for r in self.rows if r.get("case_id") == duel["against"]), duel["against"])
        head = f"paired with {against} {duel_load(duel)}, {served_by_turns(duel)}"
        if "interval" not in duel:
            return f"{head}: {duel.get('stopped') or duel.get('why') or duel['verdict']}"
        low, high = duel["interval"]
        if self.rate_leader is not None:  # the duel's runner-up is the winner now
            leader = configuration(self.rate_leader)
            first = "the highest VALID rate" if self.objective == "rate" else "the lowest p99 in one probe"
            own = "its own search's rate" if self.objective == "rate" else "its own probe's p99"
            worse = "lower" if self.objective == "rate" else "higher"
            return (f"paired with {leader} ({first}) {duel_load(duel)}, {served_by_turns(duel)}: its {p99_of(duel)}"
                    f" is {duel['ratio']:.3f}x {leader}'s [{low:.3f}, {high:.3f}] (95%), so the paired test puts it"
                    f" ahead, and it is shipped though {own} came out {worse}")  # fmt: skip
        said = {"ahead": "the winner is ahead", "tied": "tied by the paired test",
                "behind": "lower than the winner's, though it showed no VALID rate of its own"}[duel["verdict"]]  # fmt: skip
        return (f"{head}: its {p99_of(duel)} is {duel['ratio']:.3f}x the winner's [{low:.3f}, {high:.3f}] (95%), {said}"
                + slower_since(duel))

    def undecided_text(self) -> str:
        """Why searches could not show a rate VALID: their probes held too few queries at the rates tried (a slow
        generator's few requests a second in probes of a minute), with the probe length that could decide one."""
        from bench.results.server import queries_needed

        last = [search_of(r) for r in self.rows]
        unresolved = [s for s in last if str(s.get("stopped", "")).startswith("unresolved") and s.get("probes")]
        if any("max_users" in s for s in unresolved):
            return (f"; {len(unresolved)} of {len(self.rows)} users searches stopped unresolved: their probes held too"
                    f" few queries to show p99 under a bound (at least {queries_needed(0)} with none over it); a longer"
                    " measure.server_seconds can decide them")  # fmt: skip
        last = [s["probes"][-1] for s in unresolved]
        last = [p for p in last if p.get("rate")]
        if not last:
            return ""
        seconds = min((p.get("queries_needed") or queries_needed(0)) / p["rate"] for p in last)
        rates = [p["rate"] for p in last]
        return (f"; {len(last)} of {len(self.rows)} searches stopped unresolved: at {min(rates):.3g}-{max(rates):.3g}"
                f" queries/s a probe holds too few to show p99 under a bound (at least {queries_needed(0)} with none"
                f" over it, more with some over); measure.server_seconds of {seconds:.0f} s or more could decide the"
                " first of them")

    def margin_text(self) -> str:
        """The winner against the runner-up: their rates' ratio, and what their brackets allow it to be."""
        if self.winner is None:
            return "no configuration had a VALID rate within the accuracy gate" + self.undecided_text()
        if self.runner_up is None:
            shown = "users count" if searches_users(self.winner) else "rate"
            said = (f"no other configuration showed a VALID {shown} (each was pruned, not ahead by more than the"
                    " search's precision, or outside the accuracy gate)")  # fmt: skip
            bounds = [r["tune"].get("upper_bound_per_s") or 0.0 for r in self.rows
                      if str(r["tune"].get("decision", "")).startswith("pruned")]  # fmt: skip
            if bounds and max(bounds) > 0:
                low = max_rate(self.winner)
                said += (f"; the highest bound of those pruned, {max(bounds):.4g}/s, is {low / max(bounds):.2f}x under"
                         f" its {'goodput' if searches_users(self.winner) else 'VALID rate'}")  # fmt: skip
            return said
        if searches_users(self.winner):
            name = configuration(self.runner_up)
            return (f"{max_rate(self.winner) / max_rate(self.runner_up):.2f}x the runner-up's goodput ({name},"
                    f" {found_text(self.runner_up)}; searches minutes apart, not a paired interval)")  # fmt: skip
        (w_low, w_high), (r_low, r_high) = bracket(self.winner), bracket(self.runner_up)
        ratio = w_low / r_low
        upper = f"{w_high / r_low:.2f}" if w_high else "open"
        lower = f"{w_low / r_high:.2f}" if r_high else "open"
        name = configuration(self.runner_up)
        return (f"{ratio:.2f}x the runner-up's rate ({name}, {r_low:.4g}/s); its brackets allow {lower} to {upper}"
                " (each side's highest VALID and lowest failing rate; not a paired interval)")  # fmt: skip


def outcomes(rows: list[dict]) -> list[ShapeOutcome]:
    """Per shape of the tuned rows: the winner (the highest VALID rate within the gate; among equal rates, the one
    tried first; but the runner-up when the duel's paired test put it ahead at that rate), the runner-up and the
    configurations tied with the winner."""
    shapes: dict[tuple, list[dict]] = {}
    for row in tuned_rows(rows):
        shapes.setdefault(shape_of(row), []).append(row)
    found = []
    for shape, members in shapes.items():
        members.sort(key=lambda r: r["tune"].get("order", 0))
        search = next(((r.get("search") or {}) for r in members), {})
        objective = next((r["tune"]["objective"] for r in members if r["tune"].get("objective")), "rate")
        outcome = ShapeOutcome(shape, members, search.get("p99_ms"), any(r["tune"].get("exhaustive") for r in members),
                               objective, next((r["tune"].get("rate") for r in members), None))  # fmt: skip
        if objective == "rate":
            ranked = sorted((r for r in members if eligible(r)), key=lambda r: -max_rate(r))
        else:
            ranked = sorted((r for r in members if eligible(r)), key=lambda r: at_rate_key(r, objective))
        if ranked:
            outcome.winner = ranked[0]
            outcome.runner_up = ranked[1] if len(ranked) > 1 else None
            outcome.tied = [r for r in ranked[1:] if r["tune"]["decision"] == "tied"]
            duel = ranked[0]["tune"].get("duel") or {}
            overturned = next((r for r in ranked[1:] if r.get("case_id") == duel.get("against")), None)
            if duel.get("verdict") == "behind" and overturned is not None:
                outcome.rate_leader, outcome.runner_up, outcome.winner = ranked[0], ranked[0], overturned
                outcome.tied = [r for r in outcome.tied if r is not overturned]
        found.append(outcome)
    return found


def summary_lines(rows: list[dict]) -> list[str]:
    """Per shape: what to ship for the budget, the margin, and the cost in trials and seconds."""
    lines = []
    for outcome in outcomes(rows):
        model, _, seq, batch, _ = outcome.shape
        how = "every candidate searched fully (--exhaustive)" if outcome.exhaustive else "tuned"
        head = f"{model} seq {seq} batch {batch}, {outcome.budget} ({how}):"
        if outcome.objective != "rate":
            lines.append(at_rate_line(outcome, model, seq, batch))
            continue
        if outcome.winner is None:
            lines.append(f"{head} nothing to ship: {outcome.margin_text()}")
            continue
        tied = "; tied with it: " + ", ".join(configuration(r) for r in outcome.tied) if outcome.tied else ""
        if outcome.close:
            tied += (f"; not ahead of it by more than {outcome.precision:.0%} (by bound or one probe): "
                     + ", ".join(configuration(r) for r in outcome.close))  # fmt: skip
        duel = f"; {outcome.duel_text()}" if outcome.duel else ""
        lines.append(
            f"{head} ship {configuration(outcome.winner)}: {found_text(outcome.winner)}; {outcome.margin_text()}"
            f"{tied}{duel}. {outcome.trials} trials (probes) and {outcome.seconds:.0f} s for {len(outcome.rows)}"
            " candidates."
        )
    return lines


def at_rate_line(outcome: ShapeOutcome, model, seq, batch) -> str:
    """What to ship at the asked rate for the lowest p99 or the least memory, against the next best."""
    best = "the lowest p99" if outcome.objective == "latency" else "the least resident memory"
    head = f"{model} seq {seq} batch {batch}, {outcome.rate:g} queries/s with p99 ≤ {outcome.budget_ms:g} ms, {best}:"
    cost = f"{outcome.trials} trials (probes) and {outcome.seconds:.0f} s for {len(outcome.rows)} candidates."

    def figures(row: dict) -> str:
        return f"p99 {p99_at_rate(row):.1f} ms, {row['tune'].get('rss_mb') or 0:.0f} MB resident over its streams"

    if outcome.winner is None:
        return f"{head} nothing to ship: no configuration within the accuracy gate was VALID at that rate. {cost}"
    against = (f"; next: {configuration(outcome.runner_up)} ({figures(outcome.runner_up)})" if outcome.runner_up
               else "; no other configuration was VALID there within the gate")  # fmt: skip
    duel = f"; {outcome.duel_text()}" if outcome.duel else ""
    return f"{head} ship {configuration(outcome.winner)} ({figures(outcome.winner)}){against}{duel}. {cost}"


def tuned_suites(manifest: dict, rows: list[dict]) -> list[dict]:
    """A suite per shape's winner that measures it again (its rate search under the budget), the paths of model
    files beside the original suite made absolute (this one is written beside the results)."""
    from pathlib import Path

    suite = manifest.get("suite") or {}
    suite_dir = Path(manifest.get("suite_file") or ".").parent
    found = []
    for outcome in outcomes(rows):
        winner = outcome.winner
        if winner is None or not suite:
            continue
        models = [dict(m) for m in suite["models"] if m.get("name") == winner["model"]]
        for model in models:
            for key in ("path", "config"):  # a file beside the suite (a shipped config's name stays as it is)
                if model.get(key) and (suite_dir / model[key]).exists():
                    model[key] = str((suite_dir / model[key]).resolve())
        backends = [b for b in suite["backends"] if (b.get("name") or b.get("type")) == winner["backend"]]
        defaults = {k: v for k, v in suite["defaults"].items() if v is not None}
        for key in ("max_rate_under", "max_users_under"):
            if isinstance(defaults.get(key), dict):  # unset bounds left out, as a user writes it
                defaults[key] = {k: v for k, v in defaults[key].items() if v is not None}
        defaults.update(
            scenario=winner.get("scenario") or "server", seq_lens=[winner["seq_len"]], batch_sizes=[winner["batch_size"]],
            threads=[winner["threads"]], streams=[winner["streams"]], precisions=[winner["precision"]],
            padding_ratios=[winner.get("padding_ratio") or 0.0],
        )  # fmt: skip
        if outcome.objective != "rate":  # measured again at the asked rate, judged under the budget
            defaults.pop("max_rate_under", None)
            defaults.update(rates=[outcome.rate], p99_ms=outcome.budget_ms)
        found.append({
            "name": f"{suite.get('name') or 'suite'}-tuned-{len(found) + 1}",
            "description": f"What bench tune chose for {winner['model']} seq {winner['seq_len']} batch"
            f" {winner['batch_size']}, {outcome.budget}: {configuration(winner)}",
            "defaults": defaults,
            "models": [{k: v for k, v in m.items() if v not in (None, {}, []) and k not in AXES} for m in models],
            "backends": [{k: v for k, v in b.items() if v not in (None, {}, []) and k not in AXES} for b in backends],
        })  # fmt: skip
    return found
