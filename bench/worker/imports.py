"""The import probe `bench doctor` runs under each interpreter.

`python -m bench.worker.imports --result RESULT.json BACKEND...` imports each backend's module and the libraries
it needs (what the backend declares it requires) and answers with what failed and why.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.backends import BACKENDS  # an interpreter without bench's own requirements fails here, before answering
from bench.machine import PACKAGES, installed_versions
from bench.worker.answer import answer


def probe(backends: list[str]) -> dict:
    """Import each backend's module and its libraries here; record what failed, never stop at a failure."""
    results = {}
    for name in backends:
        info = BACKENDS[name]
        try:
            importlib.import_module(info.module)
            for required in info.requires:
                importlib.import_module(required)
            results[name] = {"ok": True, "environment": info.environment}
        except BaseException as exc:  # noqa: BLE001 - a library that exits while importing is a finding too
            message = f"{type(exc).__name__}: {exc}".strip().splitlines()[0]
            results[name] = {"ok": False, "environment": info.environment, "error": message}
    return {"python": sys.executable, "versions": installed_versions(PACKAGES), "backends": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.worker.imports")
    parser.add_argument("--result", required=True)
    parser.add_argument("backends", nargs="+")
    args = parser.parse_args(argv)
    return answer(args.result, lambda: probe(args.backends))


if __name__ == "__main__":
    raise SystemExit(main())
