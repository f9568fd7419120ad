"""Log lines never carry a credential, however it reaches the record (message, argument, traceback)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from app.jobs.kinds import THUMBNAIL
from app.observability.logs import configure_logging
from app.services.thumbnail_jobs import THUMBNAIL_JOB

API_KEY = "chk_0123456789abcdef_" + "s" * 43
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json", "INFO")
    try:
        yield stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_credentials_are_masked_wherever_they_appear(captured: io.StringIO) -> None:
    logger = logging.getLogger("chitram.test")
    logger.info("key %s used", API_KEY)
    logger.warning("refused: %s", ValueError(f"Authorization: Bearer {JWT}"))
    try:
        raise RuntimeError(f"upstream said {API_KEY}")
    except RuntimeError:
        logger.exception("failed")
    text = captured.getvalue()
    assert API_KEY not in text
    assert JWT not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["message"] for line in lines[:2]] == ["key [redacted] used", "refused: Authorization: [redacted]"]
    assert "[redacted]" in lines[2]["exc_info"]


def test_the_thumbnail_job_has_one_name_in_metrics_and_in_the_queue() -> None:
    assert THUMBNAIL_JOB == THUMBNAIL
