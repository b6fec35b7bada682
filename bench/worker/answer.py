"""How every child process answers its parent: one versioned envelope in the result file, never on stdout.

The worker, the peak probe and the import probe all end with `answer(RESULT, compute)`: the envelope holds what
`compute()` returned, or the error it raised (its traceback goes to the child's output, the parent's log).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable

from bench.job import EXIT_FAILED, EXIT_OK, UNSUPPORTED, Unsupported, envelope

MAX_REASON = 600


def answer(result_path: str, compute: Callable[[], dict]) -> int:
    """Write `compute()`'s envelope to `result_path`; the exit code says whether it worked."""
    try:
        reply = envelope("ok", result=compute())
    except Unsupported as exc:
        reply = error_envelope(UNSUPPORTED, exc, str(exc))
    except ModuleNotFoundError as exc:
        reply = error_envelope("missing_package", exc, f"No module named {exc.name!r} in {sys.executable}")
    except Exception as exc:  # every failure becomes an answer, with its traceback in the output
        reply = error_envelope("error", exc, f"{type(exc).__name__}: {exc}")
    write_json_atomic(result_path, reply)
    return EXIT_OK if reply["status"] == "ok" else EXIT_FAILED


def error_envelope(status: str, exc: BaseException, message: str) -> dict:
    """The whole traceback goes to the output; the reason is one line, cut to MAX_REASON characters."""
    print(traceback.format_exc(), file=sys.stderr, flush=True)
    message = " ".join(message.split())
    if len(message) > MAX_REASON:
        message = message[: MAX_REASON - 30] + f" ... ({len(message)} characters; see the log)"
    return envelope(status, error={"type": type(exc).__name__, "message": message})


def write_json_atomic(path: str, data: dict) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w") as handle:
        json.dump(data, handle)
    os.replace(tmp, path)
