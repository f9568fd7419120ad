"""Image metadata as clients see it (never the ORM class)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, computed_field, model_validator


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
    placeholder: str | None = Field(
        default=None,
        description="ThumbHash of the picture (base64), to show a blurred sketch while it loads; null until "
        "the thumbnail is made.",
    )
    visibility: Literal["unlisted", "private"] = Field(
        default="unlisted",
        description="`unlisted`: anyone with the link; `private`: only the owner and the signed links it shares.",
    )
    expires_at: datetime | None = Field(
        default=None, description="From this moment the image is gone (404), and soon deleted; null = never."
    )
    variant_widths: list[int] = Field(
        default_factory=list,
        description="Widths this image can be fetched at below its own size: `url?w=<width>` (add `&format=auto` "
        "for AVIF or WebP where the client accepts them). For a `srcset`, with the original's width last.",
    )

    @classmethod
    def describe(cls, image: Any, variant_widths: Sequence[int]) -> Self:
        """The metadata of an image row, with the variant widths this deployment serves."""
        return cls.model_validate(image, context={"variant_widths": variant_widths})

    @model_validator(mode="after")
    def _widths_below_own_size(self, info: ValidationInfo) -> Self:
        widths = (info.context or {}).get("variant_widths")
        if widths is not None and not self.variant_widths:
            # Larger widths would give the full-size picture anyway (a variant is never upscaled).
            self.variant_widths = [width for width in widths if width < max(self.width, self.height)]
        return self

    @computed_field(description="Direct link to the original bytes.")  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"/api/v1/images/{self.id}/file"

    @computed_field(description="The image's page in the web UI.")  # type: ignore[prop-decorator]
    @property
    def page_url(self) -> str:
        return f"/image/{self.id}"

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


class ImageUpdate(BaseModel):
    """What an owner may change about an image; a field left out stays as it is."""

    model_config = ConfigDict(extra="forbid")

    visibility: Literal["unlisted", "private"] | None = Field(
        default=None, description="`unlisted` (anyone with the link) or `private` (you, and your share links)."
    )
    expires_in: int | None = Field(
        default=None,
        description="Seconds from now until the image is deleted (at most MAX_EXPIRY_DAYS); null: never.",
    )


class ShareRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in: int = Field(ge=1, description="Seconds the link works (at most MAX_EXPIRY_DAYS, never past the image).")
    w: int | None = Field(default=None, description="A variant width (see the image's `variant_widths`).")
    format: Literal["jpeg", "png", "webp", "avif", "auto"] | None = Field(
        default=None, description="A variant format, as a file link's `format`."
    )


class ShareLink(BaseModel):
    url: str = Field(
        description="The signed link to the file (or the variant asked for): anyone holding it may fetch it."
    )
    thumbnail_url: str | None = Field(description="A signed link to the thumbnail, null until it is ready.")
    expires_at: datetime = Field(description="When the links stop working (403 SHARE_LINK_EXPIRED).")
