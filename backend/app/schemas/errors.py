"""The one error envelope, as it appears in OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.errors import AppError


class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. IMAGE_NOT_FOUND.")
    message: str = Field(description="Human-readable explanation.")
    details: dict[str, Any] = Field(default_factory=dict, description="Structured context; may be empty.")


class ErrorResponse(BaseModel):
    detail: ErrorBody


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries listing which error codes each status can carry."""
    by_status: dict[int, list[type[AppError]]] = {}
    for error in errors:
        by_status.setdefault(error.status_code, []).append(error)
    responses: dict[int | str, dict[str, Any]] = {}
    for status, group in sorted(by_status.items()):
        lines = "; ".join(f"`{error.code}`: {error.default_message}" for error in group)
        responses[status] = {"model": ErrorResponse, "description": lines}
    return responses
