"""Where a host's processes keep their metrics, decided before prometheus_client is first imported.

prometheus_client chooses between in-memory values and per-process mmap files when its first metric
is made, by the environment. So `python -m app` and `python -m app.worker` call `share_metrics_between_processes`
before they import the app: every process they start (uvicorn's workers, forked job workers) inherits
the directory, and `/metrics` sums the files. Deliberately free of imports from the rest of the app.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def share_metrics_between_processes() -> Path:
    """Use `PROMETHEUS_MULTIPROC_DIR` (emptied: figures start at zero with the server) or a new temporary one."""
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        # Files of an earlier run would add its processes' counters to this one's.
        for stale in directory.glob("*.db"):
            stale.unlink(missing_ok=True)
        return directory
    directory = Path(tempfile.mkdtemp(prefix="chitram-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    creator = os.getpid()

    def remove() -> None:
        if os.getpid() == creator:  # forked children run atexit handlers too
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)
    return directory
