"""`python -m app.worker`: the worker tier (app.jobs.supervisor)."""

from __future__ import annotations

import sys

from app.observability.processes import share_metrics_between_processes

if __name__ == "__main__":
    # Before anything imports prometheus_client: every worker process adds to one set of figures.
    share_metrics_between_processes()
    from app.jobs.supervisor import main

    sys.exit(main())
