"""Where a resident worker's heap buffers land, drawn afresh before each block (docs/paired.md, "Layout drawn per
block").

A process keeps one layout of its heap for life: the allocator hands a call's buffers the same free chunks call after
call, and where they fall sets a speed level the process keeps. Freeing a few pads and taking new ones of random sizes
moves the next call's buffers, so each block reads a fresh layout, as Stabilizer (Curtsinger & Berger, ASPLOS 2013)
re-randomizes one during a run. It moves what comes from the C heap (PyTorch's CPU tensors); a backend's own arena
(ONNX Runtime's, OpenVINO's) keeps its layout.
"""

from __future__ import annotations

import ctypes
import random

PADS = 8
LARGEST_PAD = 1 << 20


class HeapLayout:
    """Holds the pads; `redraw()` frees them and takes PADS new ones, each 16 B to LARGEST_PAD, never touched (so
    they add no resident memory beyond the allocator's headers)."""

    def __init__(self, rng: random.Random | None = None):
        self.rng = rng or random.Random()
        libc = ctypes.CDLL(None)
        self.malloc, self.free = libc.malloc, libc.free
        self.malloc.restype, self.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        self.free.restype, self.free.argtypes = None, [ctypes.c_void_p]
        self.pads: list[int] = []

    def redraw(self) -> None:
        self.release()
        self.pads = [p for p in (self.malloc(self.rng.randrange(16, LARGEST_PAD)) for _ in range(PADS)) if p]

    def release(self) -> None:
        for pad in self.pads:
            self.free(pad)
        self.pads = []
