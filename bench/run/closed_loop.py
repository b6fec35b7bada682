"""The closed-loop scenario (vLLM's `bench serve --max-concurrency`, GuideLLM's concurrent streams): `concurrency`
users, each sending its next query the moment its last is answered, served first come first served by `streams`
resident workers (bench.worker.resident.serve_users).

Nobody keeps a schedule here: the load adapts to the system, a slower system being offered fewer queries, so its
latency runs from each query's *send* and its figures are never put beside the server scenario's, whose latency runs
from a schedule the system cannot slow down. Each process round starts every user at once and runs for
`measure.server_seconds`; a query sent after that is not taken. The row's `closed_loop` entry holds the queries
completed per second, the latency from the send, the wait in the queue and the calls apart, and every query's times
(bench.results.closed_loop merges rounds). With `max_users_under` the users are searched instead
(bench.run.users_search), and the row shows the run of the most users VALID.
"""

from __future__ import annotations

from bench.run.offline import Load
from bench.run.paired import schedule as paired_schedule
from bench.run.server import ServerRound
from bench.run.users import round_entry, run_users, users_figures
from bench.run.users_search import search_users


def closed_loop_cases(cases: list) -> list:
    return [c for c in cases if c.closed_loop]


class ClosedLoopRound(ServerRound):
    """One process round of one closed-loop case: its streams prepared one after another, then its users run."""

    SALT = "closed-loop"

    def serve_case(self, load: Load):
        """The case's users served (or searched: bench.run.users_search) by the prepared streams: what finish_with
        adds to its row, or None when the streams did not get to serve."""
        case = load.case
        state = self.runner.job_dir(case) / "users.state"
        if case.search:
            found, shown = search_users(load, state)
            return users_figures(found, shown)
        seconds = case.measure.get("server_seconds", 10.0)
        served = run_users(load, case.concurrency, seconds, state)
        if served is None or not served["queries"]:
            return None
        return users_figures(None, round_entry(case, served, seconds))


def schedule(cases: list, done_rounds: dict[str, int], seed: int):
    """(round index, [case], [case]) per round still needed: each closed-loop case is a group of its own."""
    return paired_schedule(cases, done_rounds, seed, lambda found: [[c] for c in found], "closed-loop")
