"""Image metadata as clients see it (never the ORM class)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field


class ImageRead(BaseModel):
    """Public metadata: never the owner's email, the uploader's IP or token hashes."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str = Field(description="The uploader's file name, sanitised.")
    content_type: str = Field(description="Type detected from the bytes: image/jpeg or image/png.")
    file_size: int = Field(description="Size of the stored original in bytes.")
    width: int
    height: int
    checksum: str = Field(description="SHA-256 of the stored bytes, hex; also the file's ETag.")
    created_at: datetime

    @computed_field(description="Direct link to the original bytes.")  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"/api/v1/images/{self.id}/file"


class ImageUploaded(ImageRead):
    delete_token: str | None = Field(
        default=None,
        description="Anonymous uploads only: the one way to delete this image. Shown once; save it.",
    )


class ImagePage(BaseModel):
    items: list[ImageRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
