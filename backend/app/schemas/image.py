"""Image metadata as clients see it (never the ORM class)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field


class ImageRead(BaseModel):
    """Public metadata: never the owner's email, the uploader's IP or token hashes."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    filename: str = Field(description="The uploader's file name, sanitised.")
    content_type: str = Field(
        description="Type detected from the bytes: image/jpeg, image/png, image/webp, image/gif, image/avif, "
        "image/heic or image/heif."
    )
    file_size: int = Field(description="Size of the stored original in bytes (after metadata stripping).")
    width: int
    height: int
    checksum: str = Field(
        description="SHA-256 of the stored bytes (after metadata stripping), hex; also the file's ETag. "
        "Identical content has the same checksum, and is stored once."
    )
    created_at: datetime
    thumbnail_status: Literal["pending", "ready", "failed"] = Field(
        description="`pending` while the 300 px thumbnail is being made; `failed` if it never can be."
    )

    @computed_field(description="Direct link to the original bytes.")  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"/api/v1/images/{self.id}/file"

    @computed_field(description="Whether the thumbnail can be fetched.")  # type: ignore[prop-decorator]
    @property
    def thumbnail_ready(self) -> bool:
        return self.thumbnail_status == "ready"

    @computed_field(description="Link to the thumbnail once it is ready, else null.")  # type: ignore[prop-decorator]
    @property
    def thumbnail_url(self) -> str | None:
        return f"/api/v1/images/{self.id}/thumbnail" if self.thumbnail_ready else None


class ImageUploaded(ImageRead):
    delete_token: str | None = Field(
        default=None,
        description="Anonymous uploads only: the one way to delete this image. Shown once; save it.",
    )


class ImagePage(BaseModel):
    items: list[ImageRead]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
