"""Health report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

ComponentState = Literal["connected", "disconnected"]


class HealthRead(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"]
    version: str
    environment: str
    database: ComponentState
    storage: ComponentState
