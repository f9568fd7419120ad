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
from app.observability import scrape_server
from app.observability.logs import configure_logging
from app.observability.metrics import forget_process

logger = logging.getLogger(__name__)

RESTART_PAUSE_SECONDS = 1.0


def worker_count(settings: Settings) -> int:
    return settings.worker_processes or os.cpu_count() or 1


def _worker_main() -> None:
    """A worker process's body (forked before any event loop exists; settings from the environment)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # not the supervisor's handlers; the worker installs its own
    settings = load_settings_or_exit()
    configure_logging(settings.effective_log_format, settings.log_level)
    asyncio.run(run_worker_process(settings))


def _metrics_main(host: str, port: int, token: str | None) -> None:
    """The metrics server's process: every worker's figures, summed, at /metrics."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # stopped by the supervisor, after the workers
    scrape_server.serve(host, port, token)


class Supervisor:
    def __init__(self, processes: int, metrics_address: tuple[str, int, str | None] | None = None) -> None:
        # Forked from this process, which has imported everything and started no thread: a worker
        # (or its replacement after a crash) is ready at once instead of after seconds of imports.
        self._context = multiprocessing.get_context("fork")
        self._count = processes
        self._metrics_address = metrics_address
        self._stopping = False

    def _start_metrics(self) -> BaseProcess | None:
        if self._metrics_address is None:
            return None
        process = self._context.Process(target=_metrics_main, args=self._metrics_address, name="metrics", daemon=True)
        process.start()
        return process

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
        metrics = self._start_metrics()
        while not self._stopping:
            time.sleep(0.2)
            for number, process in enumerate(processes):
                if process.is_alive() or self._stopping:
                    continue
                logger.warning("%s exited with %s; starting it again", process.name, process.exitcode)
                if process.pid is not None:
                    forget_process(process.pid)  # its in-flight figures end with it; its counters stay
                time.sleep(RESTART_PAUSE_SECONDS)
                processes[number] = self._start(number)
            if metrics is not None and not metrics.is_alive() and not self._stopping:
                if metrics.exitcode == scrape_server.CANNOT_LISTEN:
                    metrics = None  # it said why; the workers go on without it
                    continue
                logger.warning("the metrics server exited with %s; starting it again", metrics.exitcode)
                time.sleep(RESTART_PAUSE_SECONDS)
                metrics = self._start_metrics()
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join()
        if metrics is not None:
            metrics.terminate()
            metrics.join()
        failed = [process.name for process in processes if process.exitcode not in (0, -signal.SIGTERM)]
        if failed:
            logger.warning("workers that did not stop cleanly: %s", ", ".join(failed))
        return 1 if failed else 0


def main() -> int:
    settings = load_settings_or_exit()
    configure_logging(settings.effective_log_format, settings.log_level)
    if settings.job_queue != "postgres":
        print(
            "chitram worker: JOB_QUEUE is 'memory', so the API processes make thumbnails themselves; "
            "set JOB_QUEUE=postgres (with a PostgreSQL DATABASE_URL) to run a worker tier",
            flush=True,
        )
        return 2
    metrics_address = None
    if settings.metrics_enabled and settings.worker_metrics_port:
        metrics_address = (settings.worker_metrics_host, settings.worker_metrics_port, settings.metrics_token)
    return Supervisor(worker_count(settings), metrics_address).run()
