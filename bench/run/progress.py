"""Progress on stderr: case n of N, the case running, elapsed time and an ETA from the cases so far.

On a terminal it is a live rich progress bar with each finished case printed above it; elsewhere (CI logs, files)
plain lines, one per event.
"""

from __future__ import annotations

import atexit
import sys
import time

BAR_WIDTH = 20


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, stream, clock=time.monotonic, live: bool | None = None):
        self._stream = stream
        self.clock = clock
        self.total = 0
        self.done = 0
        self.started = 0.0
        self.live = stream.isatty() if live is None else live
        self._bar = None
        self._label = ""

    @property
    def stream(self):
        """Where other messages go: while the live bar runs, the stderr it redirects above itself."""
        return sys.stderr if self._bar is not None else self._stream

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, self.clock()
        if total == 0:
            self._say("nothing to run: every case already has a row")
        elif self.live:
            self._start_bar(total)

    def _start_bar(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        columns = (BarColumn(bar_width=BAR_WIDTH), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), TextColumn("{task.description}"))  # fmt: skip
        self._bar = Bar(*columns, console=Console(file=self._stream), redirect_stdout=False)
        self._task = self._bar.add_task("", total=total)
        self._bar.start()
        atexit.register(self._stop_bar)  # an interrupted run must not leave the terminal's cursor hidden

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def line(self, label: str) -> str:
        elapsed = self.clock() - self.started
        eta = "--:--" if not self.done else clock_text(elapsed / self.done * (self.total - self.done))
        filled = BAR_WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        width = len(str(self.total))
        return (
            f"[{bar}] {self.done + 1:>{width}}/{self.total}  elapsed {clock_text(elapsed)}  ETA {eta}  {label}"
        )

    def case_started(self, case, round_index: int = 0) -> None:
        rounds = case.measure.get("rounds", 1)
        label = (
            f"{case.model} {case.backend} {case.precision} s{case.seq_len} b{case.batch_size} t{case.threads}"
            + (f" pad{case.padding_ratio:g}" if case.padding_ratio else "")
            + (f" x{case.streams} {case.scenario}" if case.under_load else "")
            + ((" rate search" if case.search else f" at {case.rate:g}/s") if case.server else "")
            + ((" users search" if case.search else f" {case.concurrency} users") if case.closed_loop else "")
            + (f"  round {round_index + 1}/{rounds}" if rounds > 1 and round_index < rounds else "")
            + (f"  round {round_index + 1} (up to {case.measure.get('max_rounds')})" if round_index >= rounds else "")
        )
        self._label = label
        if self._bar is not None:
            self._bar.update(self._task, description=label)
        else:
            self._say(self.line(label))

    def more(self, count: int, why: str) -> None:
        """`count` more rounds than planned, and why."""
        self.total += count
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)
        self._say(why)

    def case_skipped(self) -> None:
        """A later round of a case whose earlier round failed: nothing to run."""
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def case_finished(self, row: dict) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)
        if row["status"] == "ok":
            latency, accuracy = row["latency_ms"], row["accuracy"] or {}
            verdict = "accuracy ok" if accuracy.get("passed") else "ACCURACY FAILED: " + "; ".join(
                accuracy.get("failures", [])
            )
            text = f"    ok  median {latency['median']:.2f} ms  p90 {latency['p90']:.2f} ms  {verdict}"
            if (row.get("load") or {}).get("samples_per_s"):
                load = row["load"]
                text = (f"    ok  {load['samples_per_s']:.1f} samples/s from {load['streams']} stream(s) at once"
                        f"  (calls: median {latency['median']:.2f} ms)  {verdict}")  # fmt: skip
            if row.get("server"):
                server = row["server"]
                text = (f"    ok  {server['served']}/{server['queries']} queries at {server['achieved_per_s']:.1f}/s"
                        f"  latency from schedule: median {latency['median']:.2f} ms  {verdict}")  # fmt: skip
                if server.get("search"):
                    search = server["search"]
                    found = f"max VALID {search['max_rate']:g}/s" if search.get("max_rate") else "none VALID"
                    text = f"    ok  search: {found} after {len(search['probes'])} probes ({search['stopped']})  {verdict}"
            if (row.get("tune") or {}).get("decision", "").startswith("pruned"):
                text = f"    ok  {row['tune']['decision']}  {verdict}"
            if row.get("closed_loop"):
                users = row["closed_loop"]
                text = (f"    ok  {users['completed']} queries at {users['completed_per_s']:.1f}/s from"
                        f" {users['concurrency']} users  latency from send: median {latency['median']:.2f} ms  {verdict}")  # fmt: skip
                if users.get("search"):
                    search = users["search"]
                    found = f"{search['max_users']} users VALID" if search.get("max_users") else "none VALID"
                    text = f"    ok  search: {found} after {len(search['probes'])} probes ({search['stopped']})  {verdict}"
        else:
            text = f"    {row['status'].upper()}: {row['reason']}"
        self._say(f"{self._label}\n{text}" if self._bar is not None else text)

    def finish(self) -> None:
        self._stop_bar()
        if self.total:
            self._say(f"{self.done} case(s) in {clock_text(self.clock() - self.started)}")

    def _say(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self._stream, flush=True)
