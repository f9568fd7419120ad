"""The one error envelope, as it appears in OpenAPI."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.errors import AppError, InvalidRequest, ValidationFailed

ERROR_RESPONSE_REF = "#/components/schemas/ErrorResponse"
# What FastAPI documents for its own 422, replaced below by the envelope the handlers really send.
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


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
    return {
        status: {"model": ErrorResponse, "description": _codes_description(group)}
        for status, group in sorted(by_status.items())
    }


def _codes_description(errors: list[type[AppError]]) -> str:
    return "; ".join(f"`{error.code}`: {error.default_message}" for error in errors)


def _envelope_response(*errors: type[AppError]) -> dict[str, Any]:
    return {
        "description": _codes_description(list(errors)),
        "content": {"application/json": {"schema": {"$ref": ERROR_RESPONSE_REF}}},
    }


def document_framework_errors(openapi: dict[str, Any]) -> dict[str, Any]:
    """Document, in place, the errors FastAPI itself raises the way our handlers answer them.

    FastAPI adds a 422 `HTTPValidationError` to every operation that validates input, but the
    handler in `app/api/errors.py` answers it in the envelope as `VALIDATION_ERROR`; and every
    request body can fail to parse (bytes that are not UTF-8, a malformed form), which is a 400
    `INVALID_REQUEST`. Runs on the generated document, so a new route is right by default.
    Idempotent: FastAPI caches the document, and this runs on every call.
    """
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.get("responses", {})
            validation = responses.get("422")
            if validation is not None and _is_fastapi_validation_error(validation):
                responses["422"] = _envelope_response(ValidationFailed)
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = _envelope_response(InvalidRequest)
            operation["responses"] = dict(sorted(responses.items()))
    schemas = openapi.get("components", {}).get("schemas", {})
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    return openapi


def _is_fastapi_validation_error(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))
