"""Image metadata as clients see it (never the ORM class)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, computed_field


class ImageRead(BaseModel):
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
