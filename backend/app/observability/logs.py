"""How every Chitram process writes its log: one JSON object per line in production, readable text otherwise.

Each line carries the request id of the request it was written for (`request_context`); the lines
about requests themselves add method, route, status, duration and client. Secrets never reach a line:
nothing logs them on purpose, and `Redacting` masks anything shaped like an API key, a bearer credential
or a JWT in the finished line (an exception's message or traceback might carry one).
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

from app.observability.request_context import current_request_id

LogFormat = Literal["json", "text"]

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(name)s [%(request_id)s]: %(message)s"
JSON_FIELDS = ("levelname", "name", "processName", "message", "request_id")
JSON_RENAMES = {"levelname": "level", "name": "logger", "processName": "process"}

_SECRETS = re.compile(
    r"chk_[0-9a-f]{16}_[A-Za-z0-9_-]+"  # an API key (app.services.api_keys)
    r"|(?i:bearer)\s+[A-Za-z0-9._~+/-]+=*"  # any bearer credential
    r"|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"  # a JWT
)


class _DropColours(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's copy of the message with terminal colours
        return True


def name_requests_on_records() -> None:
    """Every log record made from now on carries `request_id`: the request it was written for, or "-".

    Set when the record is made (in the request's context), so every handler sees it, whoever
    configured it (the app's, pytest's). Idempotent.
    """
    make_record = logging.getLogRecordFactory()
    if getattr(make_record, "names_requests", False):
        return

    def record_with_request_id(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        record.request_id = current_request_id() or "-"
        return record

    record_with_request_id.names_requests = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(record_with_request_id)


class Redacting(logging.Formatter):
    """Masks credentials in the finished line: the message, its arguments and any traceback alike."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self._inner = inner

    def format(self, record: logging.LogRecord) -> str:
        line = self._inner.format(record)
        return _SECRETS.sub("[redacted]", line) if _SECRETS.search(line) else line


def configure_logging(log_format: LogFormat, level: str = "INFO") -> None:
    """One handler on the root logger, on stderr (uvicorn's loggers propagate to it)."""
    name_requests_on_records()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_DropColours())
    inner: logging.Formatter = logging.Formatter(TEXT_FORMAT)
    if log_format == "json":
        # `time`: ISO 8601 in UTC with microseconds.
        inner = JsonFormatter(list(JSON_FIELDS), rename_fields=JSON_RENAMES, timestamp="time")
    handler.setFormatter(Redacting(inner))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own handlers would print a second, differently shaped line; let its records reach ours.
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # Requests are logged by RequestContextMiddleware (ACCESS_LOG); uvicorn logs them whenever this
    # logger has a handler anywhere up its chain, so it must not reach the root's.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
