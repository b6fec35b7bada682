"""The heap layout a resident worker redraws before each block: a model's buffers, which land on the same chunks
call after call, land elsewhere after each redraw."""

import random

import torch

from bench.worker.heap_layout import PADS, HeapLayout


def buffers_of_a_call(x, weights) -> tuple:
    """Where two linear layers' outputs land (64 KiB and 512 KiB): a forward pass's activations in small."""
    first = torch.nn.functional.linear(x, weights[0])
    second = torch.nn.functional.linear(first, weights[1])
    return first.data_ptr(), second.data_ptr()


def test_a_redraw_moves_the_buffers_that_steady_calls_keep_reusing():
    torch.manual_seed(0)
    x, weights = torch.randn(256, 128), [torch.randn(64, 128), torch.randn(512, 64)]
    for _ in range(5):
        buffers_of_a_call(x, weights)
    steady = {buffers_of_a_call(x, weights) for _ in range(10)}
    layout = HeapLayout(random.Random(1))
    redrawn = []
    for _ in range(10):
        layout.redraw()
        assert len(layout.pads) == PADS
        redrawn.append(buffers_of_a_call(x, weights))
    layout.release()
    assert len(steady) <= 2, steady
    assert len(set(redrawn)) >= 8, redrawn
    assert len({second for _, second in redrawn}) >= 5, redrawn  # the larger buffer moves too
