"""The verdict per model: the configuration to ship, the fastest that keeps fp32 outputs, what each costs.

A configuration is a backend entry at a precision. At each shape (seq, batch, threads, padding) the trusted rows are
ranked with bench.results.compare.fastest_or_tied; the choice is the configuration that is fastest or tied at the most
shapes (then the one that is outright fastest most often, then the lowest total median).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.results.compare import fastest_or_tied, shape_key, speedups
from bench.results.rows import preparation_ms
from bench.text import plural

EXTRA_DEPENDENCIES = {
    "pytorch": "none (torch, transformers)",
    "torchscript": "none (torch, transformers)",
    "torch_compile": "none (torch, transformers; a C compiler for inductor)",
    "onnxruntime": "optimum-onnx + onnxruntime",
    "openvino": "optimum-intel + openvino",
    "ipex": "the intel environment: torch 2.8 + intel-extension-for-pytorch",
    "bettertransformer": "the intel environment: torch 2.8 + optimum 1.x",
    "trainer": "the intel environment: torch 2.8 + accelerate",
}


def config_of(row: dict) -> tuple[str, str]:
    return str(row.get("backend")), str(row.get("precision"))


def shape_text(row: dict) -> str:
    """seq 128, batch 8, 2 threads[, padding 0.5]."""
    threads = row.get("threads")
    text = f"seq {row.get('seq_len')}, batch {row.get('batch_size')}, {threads} {plural('thread', threads or 0)}"
    return text + (f", padding {row['padding_ratio']:g}" if row.get("padding_ratio") else "")


@dataclass
class Choice:
    """One configuration chosen for a model, with the evidence and what it costs."""

    backend: str
    precision: str
    rows: list[dict]
    """its rows, one per shape where it was measured"""
    wins: list[str]
    """shapes where it is fastest or tied"""
    losses: list[tuple[str, str]] = field(default_factory=list)
    """(shape, what is fastest there) where it is not fastest or tied"""
    speedups: list[float] = field(default_factory=list)
    rivals: list[str] = field(default_factory=list)
    """configurations fastest or tied at as many shapes: the run cannot rank them, only break the tie (module doc)"""

    @property
    def label(self) -> str:
        """`backend precision`, and how this CPU ran the precision when not natively: `(emulated on this CPU)`."""
        tiers = sorted({(r.get("cpu_support") or {}).get("tier") for r in self.rows} - {None, "native"})
        return f"{self.backend} {self.precision}" + (f" ({', '.join(tiers)} on this CPU)" if tiers else "")

    @property
    def backend_type(self) -> str:
        return str(self.rows[0].get("backend_type") or self.backend)

    @property
    def environment(self) -> str:
        return ", ".join(sorted({str(r.get("environment") or "main") for r in self.rows}))

    @property
    def dependencies(self) -> str:
        return EXTRA_DEPENDENCIES.get(self.backend_type, f"whatever the {self.backend_type} backend imports")

    def prepare_ms(self) -> float | None:
        values = [preparation_ms(r) for r in self.rows]
        return max((v for v in values if v is not None), default=None)

    def peak_mb(self) -> float | None:
        values = [(r.get("memory") or {}).get("peak_rss_mb") for r in self.rows]
        return max((v for v in values if v is not None), default=None)

    def margin(self) -> str:
        """The accuracy figure closest to its limit over every shape, and how much of the allowance it uses."""
        passing = [r for r in self.rows if (r.get("accuracy") or {}).get("passed")]
        worst = max((margin_of(r) for r in passing), key=lambda m: m[0], default=(0.0, "no passing case"))
        failing = len(self.rows) - len(passing)
        return worst[1] + (f"; fails accuracy at {failing} {plural('shape', failing)}" if failing else "")


def margin_of(row: dict) -> tuple[float, str]:
    """(share of the allowance used, text) of the row's accuracy figure that is closest to its limit."""
    accuracy = row.get("accuracy") or {}
    tolerance = accuracy.get("tolerance") or {}
    found: list[tuple[float, str]] = []
    bound, value = tolerance.get("max_relative_error"), accuracy.get("relative_error")
    if bound and value is not None:
        found.append((value / bound, f"relative error {value:.2g} (limit {bound:g})"))
    bound, value = tolerance.get("min_top1_agreement"), (accuracy.get("top1") or {}).get("decided_agreement")
    if bound is not None and bound < 1 and value is not None:
        found.append(((1 - value) / (1 - bound), f"top-1 agreement {value:.1%} (limit {bound:.0%})"))
    bound, value = tolerance.get("min_token_agreement"), accuracy.get("token_agreement")
    if bound is not None and bound < 1 and value is not None:
        found.append(((1 - value) / (1 - bound), f"token agreement {value:.1%} (limit {bound:.0%})"))
    if not found:
        return 0.0, "no gated figure"
    used, text = max(found, key=lambda f: f[0])
    return used, f"{text}: {max(used, 0.0):.0%} of the allowance used"


@dataclass
class ModelVerdict:
    model: str
    task: str
    shapes: int
    ship: Choice | None
    fp32: Choice | None
    undecided: list[str] = field(default_factory=list)
    """shapes where no case is trusted and passing: no choice is evidence there"""


def rank(rows: list[dict], keep=lambda row: True) -> Choice | None:
    """The configuration fastest or tied at the most shapes among the rows `keep` accepts."""
    by_shape: dict[tuple, list[dict]] = {}
    for row in rows:
        if keep(row):
            by_shape.setdefault(shape_key(row), []).append(row)
    winners: dict[tuple, list[str]] = {}
    outright: dict[tuple, int] = {}
    fastest_at: dict[tuple, tuple[str, dict]] = {}
    for key, members in by_shape.items():
        best, tied = fastest_or_tied(members)
        if best is None:
            continue
        fastest_at[key] = (shape_text(best), best)
        outright[config_of(best)] = outright.get(config_of(best), 0) + 1
        for row in [best, *tied]:
            winners.setdefault(config_of(row), []).append(shape_text(row))
    if not winners:
        return None
    medians = {c: sum(r["latency_ms"]["median"] for r in rows if config_of(r) == c and r.get("latency_ms"))
               for c in winners}  # fmt: skip
    config = min(winners, key=lambda c: (-len(winners[c]), -outright.get(c, 0), medians[c]))
    own = [r for key, members in by_shape.items() for r in members if config_of(r) == config]
    choice = Choice(*config, rows=own, wins=winners[config])
    choice.losses = [(text, " ".join(config_of(best))) for text, best in fastest_at.values() if text not in choice.wins]
    choice.rivals = [" ".join(c) for c in winners if c != config and len(winners[c]) == len(winners[config])]
    return choice


def verdicts(rows: list[dict]) -> list[ModelVerdict]:
    from bench.results.offline import single_stream

    rows = single_stream(rows)  # offline rows answer another question: their own table (bench.results.offline)
    factors = speedups(rows)
    by_model: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        by_model.setdefault((str(row.get("model")), str(row.get("task"))), []).append(row)
    found = []
    for (model, task), members in by_model.items():
        ship = rank(members)
        fp32 = rank(members, keep=lambda r: r.get("precision") == "fp32")
        for choice in (ship, fp32):
            if choice:
                choice.speedups = [f.ratio for r in choice.rows if (f := factors.get(r["case_id"])) and f.shown]
        shapes = {shape_key(r): [m for m in members if shape_key(m) == shape_key(r)] for r in members}
        undecided = [shape_text(rows[0]) for rows in shapes.values() if fastest_or_tied(rows)[0] is None]
        found.append(ModelVerdict(model, task, len(shapes), ship, fp32, undecided))
    return found
