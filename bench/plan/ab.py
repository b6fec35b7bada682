"""A/B in one run (`bench run SUITE --ab ENV`): every forward-pass case of the suite also runs in environment ENV,
as its candidate twin, paired with it block by block (bench.run.paired) as a configuration is paired with its
baseline. "Did this upgrade make us slower?" is then answered by pairs taken seconds apart, not by two runs a day
apart. ENV may be the case's own environment (an A/A run: what the test says of no change).
"""

from __future__ import annotations

import dataclasses

from bench.job import Case
from bench.plan.matrix import case_id


def candidate_label(backend: str, environment: str) -> str:
    return f"{backend}@{environment}"


def with_twins(cases: list[Case], environment: str) -> tuple[list[Case], list[str]]:
    """The cases, each measured paired, followed by their twins in `environment`; and what was left out."""
    kept, twins, left = [], [], []
    for case in cases:
        if case.generating or case.pipelined:
            left.append(case.case_id)
            continue
        base = dataclasses.replace(case, measure={**case.measure, "paired": True})
        kept.append(base)
        params = {
            **{k: v for k, v in base.to_dict().items() if k != "case_id"},
            "backend": candidate_label(case.backend, environment),
            "environment": environment,
            "pair_of": case.case_id,
        }
        twins.append(Case(**params, case_id=case_id(params)))
    notes = [f"A/B: {len(twins)} case(s) paired with their twin in environment {environment!r}"]
    if left:
        notes.append(f"A/B: {len(left)} generation or pipeline case(s) left out (they are not paired in blocks)")
    return kept + twins, notes
