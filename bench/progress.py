"""Progress on stderr: case n of N, the case running, elapsed time and an ETA from the cases so far."""

from __future__ import annotations

import time

BAR_WIDTH = 20


def clock_text(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    def __init__(self, stream, clock=time.monotonic):
        self.stream = stream
        self.clock = clock
        self.total = 0
        self.done = 0
        self.started = 0.0

    def start(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, self.clock()
        if total == 0:
            self._say("nothing to run: every case already has a row")

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
            + (f"  round {round_index + 1}/{rounds}" if rounds > 1 else "")
        )
        self._say(self.line(label))

    def case_skipped(self) -> None:
        """A later round of a case whose earlier round failed: nothing to run."""
        self.done += 1

    def case_finished(self, row: dict) -> None:
        self.done += 1
        if row["status"] == "ok":
            latency, accuracy = row["latency_ms"], row["accuracy"] or {}
            verdict = "accuracy ok" if accuracy.get("passed") else "ACCURACY FAILED: " + "; ".join(
                accuracy.get("failures", [])
            )
            self._say(f"    ok  median {latency['median']:.2f} ms  p90 {latency['p90']:.2f} ms  {verdict}")
        else:
            self._say(f"    {row['status'].upper()}: {row['reason']}")

    def finish(self) -> None:
        if self.total:
            self._say(f"{self.done} case(s) in {clock_text(self.clock() - self.started)}")

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
