"""`python -m bench.worker.case`: the worker process."""

from bench.worker.case import main

raise SystemExit(main())
