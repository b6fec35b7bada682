"""Paired rounds: each configuration measured against its baseline in adjacent blocks, by resident workers.

A *group* is one shape in one environment: its baseline (eager fp32) and the configurations compared with it. In
each process round, every configuration of a group gets a fresh resident worker, prepared before anything is timed
(export, compile and quantize never fall in a block). Then each pass runs the group as B X1 B X2 ... Xk B: every
configuration between two baseline blocks, the configurations in a fresh order per pass (drawn from the run's order
seed, recorded in the manifest). All workers of a group are pinned to the same CPUs, and exactly one runs at a time:
the others are stopped. A memory budget bounds how many stay resident; the baseline always does, the others are
paired in turn.

Each row keeps its round's blocks (`paired`: the pass log speedups against the baseline blocks around it, the gap
between blocks, the canary's readings, the CPU time the idle workers took meanwhile); bench.measure.paired turns
the rounds into a speedup with its interval.
"""

from __future__ import annotations

import math
import random
import select
import statistics
import time
from collections import defaultdict

from bench.job import Case
from bench.measure.paired import Rounds, pass_log_speedup, unresolved
from bench.run.resident import Resident, WorkerEnded

BLOCK_SECONDS = 0.2
"""How long a block should take: short enough that a pair falls within one of the machine's speed levels."""
WARM_CALL_BELOW_MS = 100.0
"""Blocks of calls shorter than this start with one untimed call (the caches the other worker took are refilled)."""
MAX_CALLS_PER_BLOCK = 50
MIN_PASSES = 2
"""Passes a process round runs whatever its time budget (`measure.round_seconds`): a median needs two pairs."""
COLD_VAR = "BENCH_COLD_START"
"""Test hook: `SUBSTRING[,...]`: the resident workers of cases whose id contains SUBSTRING start as fresh
interpreters, the others from the fork server (a warm-against-cold A/B of one case)."""


def pairable(case: Case) -> bool:
    """Single-stream forward-pass cases with `measure.paired`; generation and pipelines keep fresh workers per round,
    and offline cases are paired by their own scenario (bench.run.offline)."""
    return bool(case.measure.get("paired")) and not case.generating and not case.pipelined and not case.under_load


def groups(cases: list[Case]) -> list[list[Case]]:
    """The cases by baseline key, the baseline (when the suite has one) first, in the plan's order otherwise. In an
    A/B run, each case with its candidate twins (bench.plan.ab)."""
    found: dict[tuple, list[Case]] = defaultdict(list)
    if any(c.pair_of for c in cases):
        for case in cases:
            found[(case.pair_of or case.case_id,)].append(case)
        return [sorted(group, key=lambda c: bool(c.pair_of)) for group in found.values()]
    for case in cases:
        found[case.baseline_key].append(case)
    return [sorted(group, key=lambda c: not c.is_baseline) for group in found.values()]


def baseline_of(group: list[Case]) -> Case | None:
    """What the group's other cases are paired with: the A side of an A/B pair, or the shape's eager fp32."""
    if not group:
        return None
    first = group[0]
    if any(c.pair_of == first.case_id for c in group[1:]):
        return first
    return first if first.is_baseline and not first.pair_of else None


def williams_orders(count: int) -> list[list[int]]:
    """A Williams design for `count` treatments: each appears once at every position in every `count` rows (2·count
    when odd), and each follows every other equally often."""
    first, low, high = [0], 1, count - 1
    while len(first) < count:
        first.append(low)
        low += 1
        if len(first) < count:
            first.append(high)
            high -= 1
    rows = [[(t + shift) % count for t in first] for shift in range(count)]
    return rows + [row[::-1] for row in rows] if count % 2 else rows


class PassOrders:
    """The order of a group's configurations in each pass: the rows of a Williams design, its treatments and rows
    shuffled by the seeded `rng`, reshuffled each time the design is used up."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.queue: list[list[int]] = []
        self.count = 0

    def next(self, others: list) -> list:
        if len(others) != self.count or not self.queue:
            self.count = len(others)
            labels = list(range(self.count))
            self.rng.shuffle(labels)
            rows = williams_orders(self.count) if self.count else [[]]
            self.rng.shuffle(rows)
            self.queue = [[labels[t] for t in row] for row in rows]
        return [others[t] for t in self.queue.pop(0)]


def pass_sequence(baseline, order: list) -> list:
    """B X1 B X2 ... Xk B: each configuration has a baseline block on both sides."""
    sequence = [baseline]
    for member in order:
        sequence += [member, baseline]
    return sequence


def cold_by_request(case_id: str) -> bool:
    import os

    return any(s and s in case_id for s in os.environ.get(COLD_VAR, "").split(","))


def calls_per_block(call_ms: float, block_seconds: float = BLOCK_SECONDS) -> int:
    return max(1, min(MAX_CALLS_PER_BLOCK, math.ceil(block_seconds * 1000 / max(call_ms, 1e-3))))


def creation_order(entries: list, is_baseline, rng: random.Random) -> list:
    """The order a round makes its group's workers in, drawn per round: the configurations shuffled, the baseline
    first or second. A process's level can depend on when it was made, and when the memory budget splits a group,
    the order decides which turn a configuration is paired in; a turn can read a few percent apart from the next (two
    turns of one group at 2 threads read bf16 autocast 5-14% apart against the same baseline process). Drawn per
    round, such an effect is a difference between rounds, which the interval holds, not a bias of the estimate."""
    baseline = [e for e in entries if is_baseline(e)]
    others = [e for e in entries if not is_baseline(e)]
    rng.shuffle(others)
    order = baseline + others
    if len(order) > 1 and rng.random() < 0.5:
        order[0], order[1] = order[1], order[0]
    return order


class Member:
    """A configuration's resident worker in the current round, and what its blocks found."""

    def __init__(self, case: Case, worker: Resident, ready: dict):
        self.case, self.worker = case, worker
        self.calls = calls_per_block(ready["call_ms"], case.measure.get("block_seconds", BLOCK_SECONDS))
        self.warm = 1 if ready["call_ms"] < WARM_CALL_BELOW_MS else 0
        self.relayout = bool(self.warm) and case.measure.get("heap_layout", "redraw") == "redraw"
        """Whether each block draws the heap's layout afresh (bench.worker.heap_layout): only where an untimed call
        follows, which takes the new layout's first page faults off the clock."""
        self.rss_mb = ready.get("rss_mb") or 0.0
        self.blocks: list[dict] = []
        self.idle_cpu_s = 0.0
        self.idle_s = 0.0
        self.failure: WorkerEnded | None = None
        self.turn = 0
        """Which of the group's turns it was paired in (more than one when the memory budget splits the group)."""
        self.prepared_on: list[int] | None = None
        """The CPUs its worker prepared on (the group's, or a spare set: bench.run.paired.Preparing)."""

    def block(self) -> dict | None:
        start = time.monotonic()
        try:
            answer = self.worker.block(self.calls, self.warm, self.relayout)
        except WorkerEnded as exc:
            self.failure = exc
            return None
        end = time.monotonic()
        samples = answer["samples_ns"]
        record = {
            "start": start,
            "end": end,
            "wall": time.time(),
            "median_ms": statistics.median(samples) / 1e6,
            "canary_ms": [c / 1e6 if c else None for c in answer.get("canary_ns") or []],
            "contaminated": bool((answer.get("interference") or {}).get("contaminated")),
        }
        self.blocks.append(record)
        return record


class PassBudget:
    """`measure.round_seconds` for a round's passes: after MIN_PASSES, no pass starts that would end past the budget,
    judged by the longest pass so far (durations only, never what the blocks found)."""

    def __init__(self, budget_s: float | None):
        self.budget_s, self.started, self.longest, self.current = budget_s, time.monotonic(), 0.0, None

    def allows(self, done: int) -> bool:
        if self.budget_s is None or done < MIN_PASSES:
            return True
        return time.monotonic() - self.started + self.longest <= self.budget_s

    def pass_starts(self) -> None:
        self.current = time.monotonic()

    def pass_ends(self) -> None:
        self.longest = max(self.longest, time.monotonic() - self.current)


def run_passes(
    baseline: Member, others: list[Member], passes: int, rng: random.Random, budget_s: float | None = None
) -> dict[str, list]:
    """The round's passes; per configuration, each pass's {log_speedup, gap_s} against the baseline blocks around it.

    Each block runs alone: the members not running are stopped, and their CPU time across the block is added to
    their idle_cpu_s (the meter's view of idle workers). After MIN_PASSES, a pass that would end past `budget_s`
    seconds of passes (judged by the longest pass so far) is not started: every configuration keeps the same
    number of passes, and when to stop depends on durations only, never on what the pairs found.
    """
    found: dict[str, list] = {m.case.case_id: [] for m in others}
    members = [baseline, *others]
    orders = PassOrders(rng)
    previous = None
    budget = PassBudget(budget_s)
    for done in range(passes):
        live = [m for m in others if m.failure is None]
        if baseline.failure is not None or not live or not budget.allows(done):
            break
        budget.pass_starts()
        sequence = pass_sequence(baseline, orders.next(live))
        # the passes form one chain: a pass opens with the baseline block that closed the one before, so that no
        # block ever follows one of its own process (which would find the caches warm where the others do not)
        records = [previous] if previous is not None else []
        for member in sequence[len(records):]:
            idle = [(m, m.worker.cpu_s()) for m in members if m is not member and m.failure is None]
            record = member.block()
            for other, before in idle:
                after = other.worker.cpu_s()
                if before is not None and after is not None:
                    other.idle_cpu_s += after - before
                if record is not None:
                    other.idle_s += record["end"] - record["start"]
            records.append(record)
            if record is None:
                break
        previous = records[-1] if len(records) == len(sequence) else None
        budget.pass_ends()
        for position in range(1, len(records) - 1, 2):
            before, measured, after = records[position - 1], records[position], records[position + 1]
            if None in (before, measured, after) or any(r["contaminated"] for r in (before, measured, after)):
                continue
            log_speedup = pass_log_speedup(before["median_ms"], measured["median_ms"], after["median_ms"])
            gap = max(measured["start"] - before["end"], after["start"] - measured["end"])
            canary = canary_log_ratio(before, measured, after)
            found[sequence[position].case.case_id].append(
                {"log_speedup": log_speedup, "gap_s": gap, "canary_log_ratio": canary}
            )
    return found


def pass_blocks(baseline, others: list, rng: random.Random) -> dict[str, list]:
    """A round's blocks: `run_passes` of the baseline with `others`; without a baseline (or without others), each
    member's blocks in turn, under the same budget, unpaired (an empty result)."""
    passes = max((m.case.measure.get("passes", 1) for m in others), default=0)
    budgets = [m.case.measure["round_seconds"] for m in others if m.case.measure.get("round_seconds")]
    budget_s = min(budgets) if budgets else None
    if baseline is not None and others:
        return run_passes(baseline, others, passes, rng, budget_s)
    budget = PassBudget(budget_s)
    for done in range(passes):
        if not budget.allows(done):
            break
        budget.pass_starts()
        for member in others:
            if member.failure is None:
                member.block()
        budget.pass_ends()
    return {}


def block_canary(record: dict) -> float | None:
    readings = [c for c in record["canary_ms"] if c]
    return statistics.fmean(math.log(c) for c in readings) if readings else None


def canary_log_ratio(before: dict, measured: dict, after: dict) -> float | None:
    """The canary's log speedup over the same three blocks: how much faster the machine itself ran during the
    configuration's block than around it (the covariate a CUPED adjustment would use)."""
    logs = [block_canary(r) for r in (before, measured, after)]
    if None in logs:
        return None
    return 0.5 * (logs[0] + logs[2]) - logs[1]


def round_entry(member: Member, pairs: list | None, baseline_id: str | None, seed: int) -> dict:
    """The row's `paired` entry for one round: a configuration's pairs, or None for the baseline itself."""
    canary = [c for b in member.blocks for c in b["canary_ms"] if c]
    entry = {
        "role": "baseline" if pairs is None else "configuration",
        "baseline": baseline_id,
        "order_seed": seed,
        "blocks": len(member.blocks),
        "calls_per_block": member.calls,
        "heap_layout": "redrawn per block" if member.relayout else "kept",
        "contaminated_blocks": sum(b["contaminated"] for b in member.blocks),
        "canary_ms": statistics.median(canary) if canary else None,
        "idle_cpu_ms": round(member.idle_cpu_s * 1000, 1),
        "idle_s": round(member.idle_s, 3),
        "turn": member.turn,
        "prepared_on": member.prepared_on,
    }
    if pairs is not None:
        entry["log_speedups"] = [p["log_speedup"] for p in pairs]
        entry["canary_log_ratios"] = [p["canary_log_ratio"] for p in pairs]
        entry["gap_ms"] = [round(p["gap_s"] * 1000, 3) for p in pairs]
    else:
        entry["canary_trace"] = [  # [unix time, canary ms] of every baseline block: the machine's speed over the run
            [round(b["wall"], 3), round(math.exp(c), 5)] for b in member.blocks if (c := block_canary(b)) is not None
        ]
    return entry


def merge_entries(entries: list[dict]) -> dict:
    """The merged row's `paired`: per round, the pass log speedups (the two-level model's data) and the rest."""
    last = entries[-1]
    merged = {
        "role": last["role"],
        "baseline": last["baseline"],
        "order_seed": last["order_seed"],
        "processes": len(entries),
        "heap_layout": last.get("heap_layout"),
        "canary_ms": [e.get("canary_ms") for e in entries],
        "idle_cpu_ms": sum(e.get("idle_cpu_ms") or 0.0 for e in entries),
        "idle_s": sum(e.get("idle_s") or 0.0 for e in entries),
        "contaminated_blocks": sum(e.get("contaminated_blocks") or 0 for e in entries),
        "turns": [e.get("turn", 0) for e in entries],
        "prepared_on": [e.get("prepared_on") for e in entries],
    }
    if last["role"] == "baseline":
        merged["canary_trace"] = [point for e in entries for point in e.get("canary_trace") or []]
    if last["role"] == "configuration":
        merged["log_speedups"] = [e.get("log_speedups") or [] for e in entries]
        merged["canary_log_ratios"] = [e.get("canary_log_ratios") or [] for e in entries]
        gaps = [g for e in entries for g in e.get("gap_ms") or []]
        merged["gap_ms"] = {"median": statistics.median(gaps), "max": max(gaps)} if gaps else None
    return merged


MEMORY_SHARE = 0.5
"""Resident workers may hold this share of the memory available when the run starts."""


def default_memory_budget_mb() -> float:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 * MEMORY_SHARE
    except (OSError, ValueError, IndexError):
        pass
    return 4096.0


def schedule(cases: list[Case], done_rounds: dict[str, int], seed: int, grouping=None, salt: str = "groups"):
    """Yield (round index, group, cases of the group that still need this round), the groups shuffled per round;
    `grouping` makes the groups (this module's `groups` by default, bench.run.offline's for offline cases)."""
    if not cases:
        return
    most = max(c.measure.get("rounds", 1) for c in cases)
    for index in range(most):
        order = (grouping or groups)(cases)
        random.Random(f"{seed}:{salt}:{index}").shuffle(order)
        for group in order:
            needed = [
                c for c in group if index < c.measure.get("rounds", 1) and index >= done_rounds.get(c.case_id, 0)
            ]
            if needed:
                yield index, group, needed


def more_rounds(cases: list[Case], done: dict, finished: set, announce):
    """After the planned rounds: one more process round for each group with a speedup still wider than its
    `measure.resolve`, and again, until every group resolves or has `measure.max_rounds` processes. Yields what
    `schedule` yields; `done` must hold the rounds run so far when the next is asked for. Only the intervals' widths
    decide (bench.measure.paired.unresolved), never where the speedups land."""
    if not any(c.measure.get("resolve") for c in cases):
        return
    while True:
        comparisons, targets = {}, {}
        for case in cases:
            entries = [record["row"].get("paired") or {} for record in done.get(case.case_id, [])]
            if case.case_id in finished or not entries or entries[-1].get("role") != "configuration":
                continue
            comparisons[case.case_id] = Rounds.of([entry.get("log_speedups") or [] for entry in entries])
            if case.measure.get("resolve") and len(entries) < case.measure.get("max_rounds", 0):
                targets[case.case_id] = case.measure["resolve"]
        wide = unresolved(comparisons, targets) if targets else {}
        # A case that already has its row (it failed, or the CPU cannot run it) leaves the rest of its group paired.
        todo = [
            [c for c in g if c.case_id not in finished]
            for g in groups(cases)
            if any(c.case_id in wide for c in g) and getattr(baseline_of(g), "case_id", None) not in finished
        ]
        if not todo:
            return
        announce(sum(map(len, todo)), wider_text(todo, wide, done))
        for group in todo:
            yield max(len(done.get(c.case_id, [])) for c in group), group, group


def wider_text(todo: list[list[Case]], wide: dict, done: dict) -> str:
    def shape(group: list[Case]) -> str:
        first, widest = group[0], max(wide[c.case_id] or math.inf for c in group if c.case_id in wide)
        width = "no interval" if math.isinf(widest) else f"±{widest:.1%}"
        return (f"{first.model} s{first.seq_len} b{first.batch_size} t{first.threads} ({width} after"
                f" {len(done.get(first.case_id, []))} processes, asked ±{first.measure['resolve']:.1%})")  # fmt: skip

    return f"another process round for {len(todo)} group(s) wider than measure.resolve: " + "; ".join(map(shape, todo))


def movable(case: Case) -> bool:
    """Whether the case's worker may prepare on other CPUs and be moved when ready: not when its backend pins its
    own threads to the CPUs it found (OpenVINO's ENABLE_CPU_PINNING), which moving it could be undone by."""
    from bench.backends import BACKENDS
    from bench.backends.threads import thread_settings

    family = BACKENDS[case.backend_type].thread_family
    return not thread_settings(family, case.threads).get("ENABLE_CPU_PINNING")


def preparation_slots(group_cpus: list[int], run_cpus: list[int]) -> list[list[int]]:
    """Where a group's workers may prepare at once: its own CPUs first, then each further set of as many of the
    run's other CPUs. Preparation is never timed against another worker's blocks: no block runs meanwhile."""
    spare = [c for c in sorted(run_cpus) if c not in group_cpus]
    width = len(group_cpus)
    return [list(group_cpus)] + [spare[i : i + width] for i in range(0, len(spare) - width + 1, width)]


class Preparing:
    """A group's workers being prepared, up to one per preparation slot at a time, in the order given; a backend
    that pins its own threads only in the group's own slot."""

    def __init__(self, paired: "PairedRound", queue: list):
        self.paired, self.queue = paired, list(queue)
        self.slots = preparation_slots(paired.cpus, paired.runner.cpus)
        self.busy: dict[int, tuple] = {}
        """slot index → (case, worker)"""

    def fill(self) -> None:
        for index in range(len(self.slots)):
            if index in self.busy or not self.queue:
                continue
            fits = [i for i, (case, _, _) in enumerate(self.queue) if index == 0 or movable(case)]
            if index == 0:  # the group's own slot takes a backend that must prepare there first
                fits.sort(key=lambda i: movable(self.queue[i][0]))
            if fits:
                case, env, job = self.queue.pop(fits[0])
                self.busy[index] = (case, self.paired.start(case, env, job, self.slots[index]))

    def next_ready(self):
        """The next worker ready (a Member), None when one ended before it was, False when none is left."""
        self.fill()
        if not self.busy:
            return False
        index = self.wait_any()
        case, worker = self.busy.pop(index)
        return self.paired.ready(case, worker)

    def wait_any(self) -> int:
        """The slot whose worker is ready, has ended or is past its timeout first."""
        while True:
            now = time.monotonic()
            deadlines = {i: w.started + w.timeout for i, (_, w) in self.busy.items()}
            late = [i for i, deadline in deadlines.items() if deadline <= now]
            if late:
                return late[0]
            handles = {h: i for i, (_, w) in self.busy.items() for h in w.preparing_handles()}
            readable = select.select(list(handles), [], [], min(deadlines.values()) - now)[0]
            if readable:
                return handles[readable[0]]

    def drain(self) -> list[Member]:
        """Every worker still preparing, once ready (the ones that fail have their rows), without starting more."""
        members = []
        while self.busy:
            index = self.wait_any()
            case, worker = self.busy.pop(index)
            if (member := self.paired.ready(case, worker)) is not None:
                members.append(member)
        return members

    def abandon(self) -> None:
        """End the workers still preparing (the round failed)."""
        for _, worker in self.busy.values():
            worker.end(force=True)
        self.busy.clear()


class PairedRound:
    """One process round of one group, driven by the runner (bench.run.runner.Runner)."""

    SALT = "pairs"
    """What the round's order seed is drawn under (with the run's seed, the round and the group)."""

    def __init__(self, runner, group: list[Case], needed: list[Case], index: int):
        self.runner, self.index = runner, index
        self.needed = {c.case_id for c in needed}
        baseline = self.baseline_of(group)
        self.cases = [c for c in group if c.case_id in self.needed or c is baseline]
        self.baseline_case = baseline if baseline in self.cases else None
        self.rng = random.Random(f"{runner.order_seed}:{self.SALT}:{index}:{group[0].case_id}")
        self.rows: dict[str, dict] = {}
        self.cpus: list[int] | None = None
        self.quiet: dict | None = None
        self.others_seen: list[dict] = []
        """What else used the CPUs in each turn of the round, for the baseline's row, which spans them all."""

    @staticmethod
    def baseline_of(group: list[Case]) -> Case | None:
        return baseline_of(group)

    def run(self) -> list[tuple[Case, dict]]:
        from bench import cpu

        runner = self.runner
        startable = []
        for case in self.cases:
            support = cpu.support(case.backend_type, case.precision, runner.flags, case.backend_options)
            ready = self.placed(case, runner.decided_row(case, support) or runner.ready_to_start(case))
            if isinstance(ready, dict):
                self.rows[case.case_id] = runner.settled(support, ready)
            else:
                startable.append((case, support, ready))
        if startable:
            self.cpus = self.cpus_of(startable)
            self.quiet = runner.wait_for_quiet(self.cpus)
            self.measure(startable)
        return [(c, self.rows[c.case_id]) for c in self.cases if c.case_id in self.needed and c.case_id in self.rows]

    def placed(self, case: Case, ready):
        """What `ready_to_start` gave ((environment, job, cpus), or the row saying why not), as this round runs it."""
        return ready

    def cpus_of(self, startable: list) -> list[int]:
        """The CPUs the round's blocks run on (its quiet check looks at them)."""
        return startable[0][2][2]

    def measure(self, startable: list) -> None:
        baseline: Member | None = None
        waiting: list[Member] = []
        turn = 0
        supports = {case.case_id: support for case, support, _ in startable}
        startable = creation_order(startable, lambda entry: entry[0] is self.baseline_case, self.rng)
        preparing = Preparing(self, [(case, env, job) for case, _, (env, job, _) in startable])
        try:
            while (member := preparing.next_ready()) is not False:
                if member is None:
                    continue
                if member.case is self.baseline_case:
                    baseline = member
                else:
                    member.turn = turn
                    waiting.append(member)
                if baseline and waiting and self.resident_mb(baseline, waiting) > self.runner.memory_budget_mb:
                    drained = preparing.drain()  # no block runs while a worker prepares
                    self.pair_and_finish(baseline, waiting, supports)
                    waiting, turn = drained, turn + 1
                    for late in drained:
                        late.turn = turn
            self.pair_and_finish(baseline, waiting, supports)
            if baseline is not None:
                self.finish(baseline, None, supports)
        except BaseException:
            preparing.abandon()
            for member in [baseline, *waiting]:
                if member is not None and member.case.case_id not in self.rows:
                    member.worker.end(force=True)
            raise

    def resident_mb(self, baseline: Member, others: list[Member]) -> float:
        return baseline.rss_mb + sum(m.rss_mb for m in others)

    def start(self, case: Case, env, job, cpus: list[int]) -> Resident:
        """The case's resident worker, started preparing on `cpus`."""
        runner = self.runner
        work_dir = runner.job_dir(case)
        warm = None if cold_by_request(case.case_id) else runner.warm
        return Resident(env.python, job, work_dir, runner.log_path(case), warm, cpus)

    def ready(self, case: Case, worker: Resident) -> Member | None:
        """The prepared worker moved to the group's CPUs and stopped, or None with the case's row saying why it did
        not get ready."""
        prepared_on = worker.cpus
        try:
            ready = worker.ready()
        except WorkerEnded as exc:
            self.rows[case.case_id] = self.row(case, worker.failed(exc), None, None)
            return None
        if worker.cpus != self.cpus:
            worker.move_to(self.cpus)
        worker.pause()
        member = Member(case, worker, ready)
        member.prepared_on = prepared_on
        return member

    def pair_and_finish(self, baseline: Member | None, others: list[Member], supports: dict) -> None:
        """The passes of the baseline with `others`, then their rows; without a baseline, blocks of their own. What
        else used the CPUs meanwhile is read around the passes (bench.run.quiet.others_since)."""
        from bench.run import quiet

        before, started = quiet.reading()
        found = pass_blocks(baseline, others, self.rng)
        busy = quiet.others_since(before, started, {m.worker.pid for m in (baseline, *others) if m is not None})
        self.others_seen.extend(busy)
        for member in others:
            self.finish(member, found.get(member.case.case_id, []), supports, busy)

    def finish(self, member: Member, pairs: list | None, supports: dict, busy: list[dict] | None = None) -> None:
        case = member.case
        outcome = member.worker.failed(member.failure) if member.failure else member.worker.finish()
        baseline_id = self.baseline_case.case_id if self.baseline_case else None
        entry = round_entry(member, pairs, baseline_id, self.runner.order_seed)
        self.rows[case.case_id] = self.row(case, outcome, entry, supports.get(case.case_id))
        busiest = busy if busy is not None else busiest_of(self.others_seen)
        name_others(self.rows[case.case_id], busiest)

    def row(self, case: Case, outcome, entry: dict | None, support) -> dict:
        from bench import cpu

        runner = self.runner
        discard_job(runner, case)
        row = runner.worker_row(case, outcome, self.cpus or [], self.quiet)
        if entry is not None:
            row["paired"] = entry
        support = support or cpu.support(case.backend_type, case.precision, runner.flags, case.backend_options)
        return runner.settled(support, row)


def busiest_of(seen: list[dict]) -> list[dict]:
    """Each process once, at the highest share it took in a turn, the busiest first (bench.run.quiet.TOP_PROCESSES)."""
    from bench.run.quiet import TOP_PROCESSES

    highest: dict[int, dict] = {}
    for process in seen:
        if process["pid"] not in highest or process["cpu_percent"] > highest[process["pid"]]["cpu_percent"]:
            highest[process["pid"]] = process
    return sorted(highest.values(), key=lambda p: -p["cpu_percent"])[:TOP_PROCESSES]


def name_others(row: dict, busy: list[dict]) -> None:
    """A row some of whose blocks were contaminated keeps what else used the CPUs while its round's passes ran
    (`interference.others`), and its warning names them: the meter says that something ran, this says what."""
    from bench.run.quiet import named

    entry = row.get("interference") or {}
    if not busy or not entry.get("contaminated_blocks"):
        return
    entry["others"] = busy
    row["warnings"] = [f"{w}; busiest other processes meanwhile: {named(busy)}" if w.startswith("contaminated: ") else w
                       for w in row.get("warnings") or []]  # fmt: skip


def discard_job(runner, case: Case) -> None:
    """The case's job folder, and the jobs/ folder once no job is left in it."""
    import shutil

    shutil.rmtree(runner.job_dir(case), ignore_errors=True)
    try:
        runner.job_dir(case).parent.rmdir()
    except OSError:
        pass
