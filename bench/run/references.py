"""Where a case's eager fp32 reference is kept: one file per model, shape and seed in the cache, keyed by what
determines its outputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from bench.job import Case, Source
from bench.machine import installed_versions
from bench.paths import cache_root

REFERENCE_FORMAT = 2
"""2: the last hidden state of models with a head, and the inputs digest."""


def reference_path(case: Case, source: Source) -> Path:
    """Keyed by everything that determines the reference outputs, including main's torch and transformers."""
    versions = installed_versions(("torch", "transformers"), keep_missing=True)
    key = {
        "format": REFERENCE_FORMAT,
        "model": source.identity,
        "task": case.task,
        "shape": [case.batch_size, case.seq_len, case.padding_ratio],
        **({"new_tokens": case.new_tokens} if case.generating else {}),
        **({"texts": case.texts} if case.pipelined else {}),
        "seed": case.seed,
        "versions": versions,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_root() / "references" / f"{case.model}-{digest}.npz"
