"""Exit codes and the one error type of the command line; every failure ends as a `CliError`.

Each kind of failure has its own exit code, so a script can tell "try again later" (rate limited,
server down) from "fix something" (bad key, file too large):

    0  success
    1  any other failure (the server's error code and message are shown)
    2  usage: an unknown option, a malformed value
    3  the server cannot be reached (connection refused, DNS, timeout)
    4  not logged in, or the key is wrong, expired or revoked (401)
    5  forbidden: the key lacks a scope, the image is someone else's, the quota is used up (403)
    6  the file is larger than the server accepts (413)
    7  rate limited (429); the message says how long to wait
    8  not found (404)
    9  a local file is missing or unreadable
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import httpx

from chitram_cli.output import human_size


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    UNREACHABLE = 3
    UNAUTHORIZED = 4
    FORBIDDEN = 5
    TOO_LARGE = 6
    RATE_LIMITED = 7
    NOT_FOUND = 8
    LOCAL_FILE = 9


class CliError(Exception):
    """A failure to report on one line of stderr, ending the command (or one file of it) with `exit_code`."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILURE, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        # The server's machine-readable code, when the failure came from the server (for --json output).
        self.code = code


def _error_body(response: httpx.Response) -> tuple[str, str, dict[str, Any]]:
    """The envelope's code, message and details; a stand-in for a body that is not the envelope (a proxy's page)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, dict) and isinstance(detail.get("code"), str):
        details = detail.get("details")
        return str(detail["code"]), str(detail.get("message", "")), details if isinstance(details, dict) else {}
    return f"HTTP_{response.status_code}", f"the server answered {response.status_code} {response.reason_phrase}", {}


def _quota_message(message: str, details: dict[str, Any]) -> str:
    parts = []
    if details.get("quota_bytes") is not None:
        parts.append(f"{human_size(details.get('used_bytes'))} of {human_size(details['quota_bytes'])} used")
    if details.get("quota_images") is not None:
        parts.append(f"{details.get('used_images', '?')} of {details['quota_images']} images")
    if details.get("file_size"):  # 0 when the account was found full before the file was read
        parts.append(f"this file is {human_size(details['file_size'])}")
    figures = f" ({'; '.join(parts)})" if parts else ""
    return f"quota exceeded{figures}: {message}"


def _retry_after(response: httpx.Response, details: dict[str, Any]) -> str:
    header = str(response.headers.get("retry-after", ""))
    if header.isdigit():
        return header
    seconds = details.get("retry_after_seconds")
    return str(seconds) if isinstance(seconds, int) else "a moment"


def error_from_response(response: httpx.Response) -> CliError:
    """The `CliError` for a refused request: the exit code of its kind and one readable line."""
    code, message, details = _error_body(response)
    status = response.status_code
    if code == "QUOTA_EXCEEDED":
        return CliError(_quota_message(message, details), ExitCode.FORBIDDEN, code=code)
    if status == 401:
        # A wrong password is not cured by logging in again; a refused key or token is.
        hint = "" if code == "INVALID_CREDENTIALS" else " (run `chitram login` for a new key)"
        return CliError(f"{code}: {message}{hint}", ExitCode.UNAUTHORIZED, code=code)
    if status == 403:
        if code == "INSUFFICIENT_SCOPE":
            granted = ", ".join(details.get("granted") or []) or "none"
            message = f"{message} (needs {details.get('required', '?')}; this key has {granted})"
        return CliError(f"forbidden ({code}): {message}", ExitCode.FORBIDDEN, code=code)
    if status == 413:
        limit = details.get("max_size_bytes")
        shown = f"the limit is {human_size(limit)}" if limit is not None else message
        return CliError(f"file too large: {shown}", ExitCode.TOO_LARGE, code=code)
    if status == 429:
        seconds = _retry_after(response, details)
        unit = " s" if seconds.isdigit() else ""
        return CliError(f"rate limited; try again in {seconds}{unit}", ExitCode.RATE_LIMITED, code=code)
    if status == 404:
        return CliError(f"not found ({code}): {message}", ExitCode.NOT_FOUND, code=code)
    return CliError(f"{code}: {message}", ExitCode.FAILURE, code=code)


def error_from_transport(error: httpx.TransportError, base_url: str) -> CliError:
    """`cannot reach <url>: <reason>` for a request that never got an answer."""
    if isinstance(error, httpx.TimeoutException):
        reason = "timed out"
    elif isinstance(error, httpx.ConnectError):
        text = str(error).lower()
        if "refused" in text:
            reason = "connection refused"
        elif "name or service" in text or "nodename" in text or "resolution" in text:
            reason = "unknown host"
        else:
            reason = str(error) or "cannot connect"
    else:
        reason = str(error) or type(error).__name__
    return CliError(f"cannot reach {base_url}: {reason}", ExitCode.UNREACHABLE, code="UNREACHABLE")
