"""`python -m bench.worker`: the worker process, as `python -m bench.worker.case`."""

from bench.worker.case import main

raise SystemExit(main())
