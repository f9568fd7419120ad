"""Comparing error envelopes: every one names its request (`details.request_id`), which differs per request."""

from __future__ import annotations

from typing import Any


def without_request_id(details: dict[str, Any]) -> dict[str, Any]:
    """`details` minus its request id, which must be there."""
    request_id = details.get("request_id")
    assert isinstance(request_id, str), details
    assert request_id, details
    return {key: value for key, value in details.items() if key != "request_id"}
