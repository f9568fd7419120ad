"""Accounts as clients see them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field


class UserCreate(BaseModel):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=8, max_length=128, description="8 to 128 characters, any Unicode.")


class UserLogin(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    is_active: bool
    created_at: datetime


class AuthResponse(BaseModel):
    user: UserRead
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: datetime


class OAuth2TokenResponse(BaseModel):
    """The shape OAuth2 clients (Swagger UI's Authorize button) expect."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
