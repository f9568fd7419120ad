"""The job queue's settings and retry schedule, which need no server."""

from __future__ import annotations

import statistics

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.services.thumbnail_jobs import MAX_RETRY_DELAY_SECONDS, retry_delay


def test_retry_delays_double_with_jitter_and_are_capped() -> None:
    for attempts in range(1, 12):
        ceiling = min(2.0 * 2 ** (attempts - 1), MAX_RETRY_DELAY_SECONDS)
        delays = [retry_delay(2.0, attempts) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        # Spread out, so that jobs that failed together (a storage outage) do not all retry together.
        assert statistics.pstdev(delays) > ceiling / 20


def test_postgres_queue_needs_a_postgres_database() -> None:
    with pytest.raises(ValidationError, match="JOB_QUEUE=postgres"):
        Settings(job_queue="postgres", database_url="sqlite+aiosqlite:///x.db")


@pytest.mark.parametrize(
    ("queue", "told", "renders"),
    [("memory", None, True), ("postgres", None, False), ("postgres", True, True), ("memory", False, False)],
)
def test_api_processes_make_thumbnails_only_without_a_worker_tier_unless_told(
    queue: str, told: bool | None, renders: bool
) -> None:
    settings = Settings(
        job_queue=queue, thumbnail_workers_enabled=told, database_url="postgresql+asyncpg://postgres@127.0.0.1/x"
    )
    assert settings.makes_thumbnails_in_api is renders
