"""An upload as received from the wire, before any validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass
class ReceivedUpload:
    file: BinaryIO  # positioned at 0; a spooled temporary file owned by the request
    filename: str | None  # exactly as the client sent it: untrusted
    declared_content_type: str | None  # the part's Content-Type header: untrusted
    size: int
    # The other text fields of the form (`visibility`, `expires_in`): untrusted.
    fields: dict[str, str] = field(default_factory=dict)
