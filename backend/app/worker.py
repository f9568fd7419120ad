"""`python -m app.worker`: the worker tier (app.jobs.supervisor)."""

from __future__ import annotations

import sys

from app.jobs.supervisor import main

if __name__ == "__main__":
    sys.exit(main())
