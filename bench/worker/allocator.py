"""The C library's allocator in a worker (`measure.allocator`).

glibc's malloc serves a large buffer from its heap, or maps fresh pages for it when the buffer is above its mmap
threshold, and gives a heap's free top back to the kernel above its trim threshold. It moves both thresholds as a
process frees mapped buffers, so two processes of one case can end up in different states: at bert-tiny, batch 8,
128 tokens on one thread, one process took about 1250 page faults a call and ran 15.3 ms, the next 2000 and 17.3 ms,
where with the thresholds fixed calls took 12.5 ms with no fault (a 2-vCPU AMD EPYC Zen 4).

- `glibc` (default): the allocator as a deployed process gets it, nothing set.
- `steady`: both thresholds fixed (mallopt) before the model loads, the mmap threshold at glibc's largest (32 MiB),
  the trim threshold at 1 GiB: a call's buffers come from the heap and stay there, as with the
  `MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` settings, or allocators such as jemalloc and tcmalloc, that
  tuned CPU deployments use. Memory freed is kept by the process rather than returned.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
STEADY = {"mmap_threshold": 32 << 20, "trim_threshold": 1 << 30}

_state: dict | None = None


def apply(name: str) -> dict:
    """Set the allocator `name` in this process, once (what took effect: `state()`)."""
    global _state
    if _state is not None:
        return _state
    if name != "steady":
        _state = {"name": name}
        return _state
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:
        _state = {"name": name, "took_effect": False, "reason": "this C library has no mallopt (not glibc)"}
        return _state
    mallopt.restype, mallopt.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_int]
    refused = [key for key, option in (("mmap_threshold", M_MMAP_THRESHOLD), ("trim_threshold", M_TRIM_THRESHOLD))
               if mallopt(option, STEADY[key]) != 1]  # fmt: skip
    _state = {"name": name, **STEADY, "took_effect": not refused}
    if refused:
        _state["reason"] = f"mallopt refused {', '.join(refused)}"
    return _state


def state() -> dict:
    return _state or {"name": "glibc"}
