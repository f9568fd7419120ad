"""Health report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ComponentState = Literal["connected", "disconnected"]
OptionalComponentState = Literal["connected", "disconnected", "disabled"]


class UploadConcurrency(BaseModel):
    limit: int
    in_use: int
    waiting: int


class HealthRead(BaseModel):
    status: Literal["healthy", "degraded", "unhealthy"] = Field(
        description="unhealthy (503): database or storage down; degraded: Redis or the database replica down, "
        "served without it."
    )
    version: str
    environment: str
    database: ComponentState
    database_replica: OptionalComponentState = Field(
        description="The streaming replica (DATABASE_REPLICA_URL); while it is down, reads run on the primary."
    )
    storage: ComponentState
    cache: OptionalComponentState
    rate_limiter: Literal["redis", "memory", "memory-fallback"]
    upload_concurrency: UploadConcurrency


class LiveRead(BaseModel):
    status: Literal["alive"] = "alive"


class ReadyRead(BaseModel):
    status: Literal["ready", "degraded", "unready"] = Field(
        description="unready (503): database or storage unreachable; degraded (200): Redis unreachable, so the "
        "cache and the shared rate limits are skipped (each process limits alone) until it is back, or the "
        "database replica unreachable, so every read runs on the primary until it is back."
    )
    database: ComponentState
    database_replica: OptionalComponentState
    storage: ComponentState
    cache: OptionalComponentState
