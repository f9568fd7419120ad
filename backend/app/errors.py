"""Every expected failure of the service, with its HTTP status and stable code.

    AppError                        500 INTERNAL_ERROR (base; never raised directly)
    ├── InvalidRequest              400 INVALID_REQUEST
    ├── InvalidVariant              400 INVALID_VARIANT (a width, format or parameter outside the lists)
    ├── VariantUnavailable          422 VARIANT_UNAVAILABLE (this image cannot be rendered that way)
    ├── ValidationFailed            422 VALIDATION_ERROR
    ├── UploadRejected              400 (one subclass per reason)
    │   ├── InvalidFileFormat       400 INVALID_FILE_FORMAT
    │   ├── InvalidImage            400 INVALID_IMAGE
    │   ├── ImageDimensionsExceeded 400 IMAGE_DIMENSIONS_EXCEEDED
    │   └── AnimationTooLarge       400 ANIMATION_TOO_LARGE (too many frames, or too many pixels in all)
    ├── UploadTimeout               408 UPLOAD_TIMEOUT
    ├── FileTooLarge                413 FILE_TOO_LARGE
    ├── ImageNotFound               404 IMAGE_NOT_FOUND
    ├── ApiKeyNotFound              404 API_KEY_NOT_FOUND
    ├── RangeNotSatisfiable         416 RANGE_NOT_SATISFIABLE
    ├── StorageUnavailable          503 STORAGE_UNAVAILABLE
    ├── ServiceUnavailable          503 SERVICE_UNAVAILABLE (database unreachable, uploads full)
    ├── Unauthorized                401 UNAUTHORIZED (missing or bad credentials; WWW-Authenticate)
    │   ├── TokenExpired            401 TOKEN_EXPIRED
    │   └── InvalidCredentials      401 INVALID_CREDENTIALS
    ├── Forbidden                   403 FORBIDDEN
    │   ├── DeleteTokenRequired     403 DELETE_TOKEN_REQUIRED
    │   ├── InvalidDeleteToken      403 INVALID_DELETE_TOKEN
    │   ├── InsufficientScope       403 INSUFFICIENT_SCOPE (a key without the scope, or a key where a login is needed)
    │   ├── QuotaExceeded           403 QUOTA_EXCEEDED (the account's bytes or images; figures in details)
    │   └── ShareLinkExpired        403 SHARE_LINK_EXPIRED (a signed link past its expiry)
    ├── EmailExists                 409 EMAIL_EXISTS
    ├── RateLimitExceeded           429 RATE_LIMIT_EXCEEDED (Retry-After)
    └── ThumbnailNotReady           404 THUMBNAIL_NOT_READY

Codes are part of the public API: clients switch on them, so never rename one. Every error is
rendered as `{"detail": {"code", "message", "details"}}` by the handlers in `app/api/errors.py`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Internal server error."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class InvalidRequest(AppError):
    status_code = 400
    code = "INVALID_REQUEST"
    default_message = "The request is not valid."


class InvalidVariant(AppError):
    status_code = 400
    code = "INVALID_VARIANT"
    default_message = "Variants are asked for with `w` (one of the listed widths) and `format`, each at most once."


class VariantUnavailable(AppError):
    status_code = 422
    code = "VARIANT_UNAVAILABLE"
    default_message = "This variant cannot be made from this image."


class ValidationFailed(AppError):
    status_code = 422
    code = "VALIDATION_ERROR"
    default_message = "The request did not pass validation."

    @classmethod
    def of_field(cls, name: str, message: str, *, location: str = "body") -> ValidationFailed:
        """One field's refusal, in the shape FastAPI gives its own validation errors."""
        return cls(message, details={"errors": [{"loc": [location, name], "msg": message, "type": "value_error"}]})


class UploadRejected(AppError):
    status_code = 400


class InvalidFileFormat(UploadRejected):
    code = "INVALID_FILE_FORMAT"
    default_message = "The file is not an allowed image type."


class InvalidImage(UploadRejected):
    code = "INVALID_IMAGE"
    default_message = "The file could not be decoded as an image."


class ImageDimensionsExceeded(UploadRejected):
    code = "IMAGE_DIMENSIONS_EXCEEDED"
    default_message = "The image has more pixels than allowed."


class AnimationTooLarge(UploadRejected):
    code = "ANIMATION_TOO_LARGE"
    default_message = "The animation has more frames, or more pixels in all its frames, than allowed."


class FileTooLarge(AppError):
    status_code = 413
    code = "FILE_TOO_LARGE"
    default_message = "The file is larger than allowed."


class UploadTimeout(AppError):
    status_code = 408
    code = "UPLOAD_TIMEOUT"
    default_message = "The upload took too long to arrive."


class ImageNotFound(AppError):
    status_code = 404
    code = "IMAGE_NOT_FOUND"
    default_message = "No image with this id."


class ApiKeyNotFound(AppError):
    status_code = 404
    code = "API_KEY_NOT_FOUND"
    default_message = "No API key with this id."


class RangeNotSatisfiable(AppError):
    status_code = 416
    code = "RANGE_NOT_SATISFIABLE"
    default_message = "The requested range is outside the file."


class StorageUnavailable(AppError):
    status_code = 503
    code = "STORAGE_UNAVAILABLE"
    default_message = "Image storage is unavailable; try again later."


class ServiceUnavailable(AppError):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    default_message = "The service is temporarily unavailable; try again later."


class Unauthorized(AppError):
    status_code = 401
    code = "UNAUTHORIZED"
    default_message = "Authentication required."

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        # RFC 6750: a 401 names the scheme the client should use.
        super().__init__(message, details=details, headers={"WWW-Authenticate": "Bearer"})


class TokenExpired(Unauthorized):
    code = "TOKEN_EXPIRED"
    default_message = "The access token has expired; log in again."


class InvalidCredentials(Unauthorized):
    code = "INVALID_CREDENTIALS"
    default_message = "Incorrect email or password."


class Forbidden(AppError):
    status_code = 403
    code = "FORBIDDEN"
    default_message = "You may not do this to this image."


class DeleteTokenRequired(Forbidden):
    code = "DELETE_TOKEN_REQUIRED"
    default_message = "Deleting an anonymous upload needs its delete token (X-Delete-Token header)."


class InvalidDeleteToken(Forbidden):
    code = "INVALID_DELETE_TOKEN"
    default_message = "The delete token does not match this image."


class InsufficientScope(Forbidden):
    code = "INSUFFICIENT_SCOPE"
    default_message = "This credential may not do this."


class QuotaExceeded(Forbidden):
    code = "QUOTA_EXCEEDED"
    default_message = "This upload would exceed the account's quota."


class ShareLinkExpired(Forbidden):
    code = "SHARE_LINK_EXPIRED"
    default_message = "This share link has expired; ask the owner for a new one."


class EmailExists(AppError):
    status_code = 409
    code = "EMAIL_EXISTS"
    default_message = "An account with this email already exists."


class RateLimitExceeded(AppError):
    status_code = 429
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Too many requests; slow down."


class ThumbnailNotReady(AppError):
    status_code = 404
    code = "THUMBNAIL_NOT_READY"
    default_message = "The thumbnail is not ready yet."
