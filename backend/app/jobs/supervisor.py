"""`python -m app.worker`: one worker process per core (WORKER_PROCESSES), kept running.

Rendering holds the GIL for much of its time, so one host's cores are used by processes, not threads.
The supervisor starts them, starts again one that dies (after a pause, so a crash loop cannot spin),
and on SIGTERM or SIGINT passes SIGTERM on and waits for every process to drain (`app.jobs.worker`).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from app.config import Settings, load_settings_or_exit
from app.jobs.process import run_worker_process

logger = logging.getLogger(__name__)

RESTART_PAUSE_SECONDS = 1.0
LOG_FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s: %(message)s"


def worker_count(settings: Settings) -> int:
    return settings.worker_processes or os.cpu_count() or 1


def _worker_main() -> None:
    """A worker process's body (forked before any event loop exists; settings from the environment)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # not the supervisor's handlers; the worker installs its own
    settings = load_settings_or_exit()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    asyncio.run(run_worker_process(settings))


class Supervisor:
    def __init__(self, processes: int) -> None:
        # Forked from this process, which has imported everything and started no thread: a worker
        # (or its replacement after a crash) is ready at once instead of after seconds of imports.
        self._context = multiprocessing.get_context("fork")
        self._count = processes
        self._stopping = False

    def _start(self, number: int) -> BaseProcess:
        process = self._context.Process(target=_worker_main, name=f"worker-{number}", daemon=False)
        process.start()
        logger.info("started %s (pid %s)", process.name, process.pid)
        return process

    def _stop(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping:
            logger.info("signal %d: stopping the workers", signum)
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        processes = [self._start(number) for number in range(self._count)]
        while not self._stopping:
            time.sleep(0.2)
            for number, process in enumerate(processes):
                if process.is_alive() or self._stopping:
                    continue
                logger.warning("%s exited with %s; starting it again", process.name, process.exitcode)
                time.sleep(RESTART_PAUSE_SECONDS)
                processes[number] = self._start(number)
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join()
        failed = [process.name for process in processes if process.exitcode not in (0, -signal.SIGTERM)]
        if failed:
            logger.warning("workers that did not stop cleanly: %s", ", ".join(failed))
        return 1 if failed else 0


def main() -> int:
    settings = load_settings_or_exit()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if settings.job_queue != "postgres":
        print(
            "chitram worker: JOB_QUEUE is 'memory', so the API processes make thumbnails themselves; "
            "set JOB_QUEUE=postgres (with a PostgreSQL DATABASE_URL) to run a worker tier",
            flush=True,
        )
        return 2
    return Supervisor(worker_count(settings)).run()
