"""The floating-point operations of one forward pass of a case's model at its shape (imports torch; worker side).

Counted with `torch.utils.flop_counter.FlopCounterMode` on the meta device: no weights are allocated and nothing
is computed, so it costs well under a second. It counts matrix products (2·m·n·k for every matmul, linear,
attention product and convolution), the operations that dominate a transformer; element-wise work (softmax,
GELU, layer norm) is left out, as is usual for a roofline. The count is the model's arithmetic at the full
padded shape, whatever the backend does with it, so every backend and precision of a shape shares it.
"""

from __future__ import annotations

import sys

from bench.job import Job

def count_flops(job: Job) -> int:
    """FLOPs of one forward pass of the job's model on a batch of its shape."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from bench.measure.loading import load_config, model_call_kwargs, model_class

    case = job.case
    config = load_config(job.source, case.model_entry.get("config_overrides", {}))
    shape = (case.batch_size, case.seq_len)
    with torch.device("meta"):
        # eager attention: sdpa's mask helpers read tensor values, which the meta device has not got
        model = model_class(case.task).from_config(config, attn_implementation="eager").eval()
        inputs = {
            "input_ids": torch.zeros(shape, dtype=torch.long),
            "attention_mask": torch.ones(shape, dtype=torch.long),
        }
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(**inputs, **model_call_kwargs(case.task))
    return int(counter.get_total_flops())


def try_count_flops(job: Job) -> int | None:
    """The count, or None (said in the worker's log) when this model cannot be counted: a case never fails on it."""
    try:
        return count_flops(job)
    except Exception as exc:  # the count is a bonus column, never a reason to lose a measurement
        print(f"FLOP count unavailable: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return None
