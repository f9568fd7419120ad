"""API keys, usage and account changes as clients see them (ADR 0017)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Scope = Literal["images:read", "images:upload", "images:delete"]


class ApiKeyCreate(BaseModel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] = Field(
        description="What the key is for (e.g. `ShareX on my laptop`)."
    )
    scopes: list[Scope] = Field(
        min_length=1,
        max_length=3,
        description="What the key may do: `images:read` (list and read your images, private ones too), "
        "`images:upload`, `images:delete`.",
    )
    expires_in_days: int | None = Field(
        default=None, ge=1, le=3650, description="The key stops working after this many days; null = never."
    )


class ApiKeyRead(BaseModel):
    """A key as listed: never its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    scopes: list[Scope]
    prefix: str = Field(description="The key's first characters (`chk_<public id>`), to tell keys apart.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="To the minute; null if never used.")
    expires_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown once: it is stored only as a hash.")


class ApiKeyList(BaseModel):
    items: list[ApiKeyRead]


class UsageRead(BaseModel):
    used_bytes: int = Field(description="Bytes of all your images as stored (a duplicate counts each time).")
    used_images: int
    quota_bytes: int | None = Field(description="USER_QUOTA_BYTES; null = unlimited.")
    quota_images: int | None = Field(description="USER_QUOTA_IMAGES; null = unlimited.")


class PasswordChange(BaseModel):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=8, max_length=128, description="8 to 128 characters, any Unicode.")


class AccountDelete(BaseModel):
    password: str = Field(max_length=1024, description="The account's password, to confirm.")
    confirm: Literal["DELETE"] = Field(description='The word "DELETE", to confirm.')
