"""Settings read from the environment (pydantic-settings).

Nothing here runs at import time: `get_settings()` builds the object on first use, and the app
factory receives a `Settings` instance, so tests can build apps with their own settings.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.media.formats import ALL_CONTENT_TYPES

BACKEND_DIR = Path(__file__).resolve().parents[1]
DATA_DIR = BACKEND_DIR / "data"

# Placeholders that must never sign tokens in production (copied from .env examples by mistake).
PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "changeme", "secret", "dev-secret"})
MIN_PRODUCTION_SECRET_LENGTH = 32
SUPPORTED_DRIVERS = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})


REDIS_CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
REDIS_SCHEMES = ("redis://", "rediss://", "unix://", *REDIS_CLUSTER_SCHEMES)


def _check_cluster_url(url: str) -> None:
    """Refuse at start-up what the cluster client would only refuse at its first call."""
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    seeds = [seed.strip() for seed in hosts.split(",")]
    if not all(seeds):
        raise ValueError("a Redis Cluster URL lists seed nodes as host:port,host:port")
    for position, seed in enumerate(seeds, start=1):
        port = seed.rpartition("]")[2] if seed.startswith("[") else seed
        _, colon, digits = port.rpartition(":")
        if colon and not digits.isdigit():
            # By position, not by text: a password with an unescaped '/', '?' or '#' ends up here.
            raise ValueError(f"seed node {position} has no valid port (percent-encode '/', '?', '#' in a password)")
    if parts.path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0")


class Settings(BaseSettings):
    """Every knob of the service; environment variable names match the original deployments."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    app_env: Literal["development", "production"] = "development"
    debug: bool = False

    database_url: str = f"sqlite+aiosqlite:///{DATA_DIR / 'chitram.db'}"
    # A streaming replica of DATABASE_URL (PostgreSQL only). Reads that may lag go there once it has
    # replayed past the primary's position as of the read's start (read-your-writes, ADR 0019);
    # None = every read on the primary.
    database_replica_url: str | None = None
    # Connections kept open: an upload slot, a thumbnail job and a page can each hold one, and every
    # connection past the pool is opened and closed per use (a new server process on PostgreSQL).
    db_pool_size: int = Field(default=20, ge=1, le=100)
    db_max_overflow: int = Field(default=10, ge=0, le=100)

    storage_backend: Literal["local", "minio"] = "local"
    local_storage_path: Path = DATA_DIR / "images"
    minio_endpoint: str = "localhost:9000"
    minio_access_key: str = ""
    minio_secret_key: str = ""
    minio_bucket: str = "chitram"
    minio_secure: bool = False
    minio_region: str = "us-east-1"
    # Bound on how long start-up may wait for the bucket check/creation before failing.
    storage_startup_timeout_seconds: float = Field(default=10.0, gt=0)

    # Who sends a file's bytes: the app (`stream`), the reverse proxy from local storage through an
    # internal redirect (`accel-redirect`: X-Accel-Redirect for nginx, handle_response in Caddy),
    # or the object store itself (`presigned-redirect`: a short-lived presigned S3 URL).
    file_delivery: Literal["stream", "accel-redirect", "presigned-redirect"] = "stream"
    accel_redirect_prefix: str = "/_chitram_files/"
    presigned_url_expire_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    # Per process: recently served files up to 1 MiB are kept in memory (streamed otherwise); 0 = off.
    file_cache_mb: int = Field(default=32, ge=0, le=4096)

    max_file_size_mb: float = Field(default=5, gt=0, le=1024)
    allowed_content_types: Annotated[tuple[str, ...], NoDecode] = ALL_CONTENT_TYPES
    max_image_pixels: int = Field(default=50_000_000, ge=1)
    # Animations, checked from the headers before a frame is decoded: how many frames, and how many
    # pixels all frames together cost to decode (each at the animation's canvas size).
    max_frames: int = Field(default=1000, ge=1)
    max_animation_pixels: int = Field(default=500_000_000, ge=1)
    # Originals are stored without EXIF (but its orientation), GPS, XMP, IPTC, comments and text (ADR 0013).
    strip_metadata: bool = True

    jwt_secret_key: str | None = None
    jwt_expire_minutes: int = Field(default=1440, ge=1, le=60 * 24 * 90)
    allow_anonymous_uploads: bool = True
    # How far ahead an upload may ask to expire (`expires_in`), and a share link may last (ADR 0017).
    max_expiry_days: int = Field(default=365, ge=1, le=36500)
    # Per account, over all its images (as stored, after metadata stripping); unset = unlimited.
    user_quota_bytes: int | None = Field(default=None, ge=0)
    user_quota_images: int | None = Field(default=None, ge=0)
    # How often a process that runs background work removes expired images and deleted accounts' images.
    expiry_sweep_interval_seconds: float = Field(default=30.0, gt=0)

    # Redis: metadata cache and shared rate limits. None (the embedded default) = no Redis at all.
    # `redis+cluster://host:port[,host:port…]` (or `rediss+cluster://`) names a Redis Cluster by seed nodes.
    redis_url: str | None = None
    cache_key_prefix: str = "chitram:"
    cache_ttl_seconds: int = Field(default=3600, ge=1)
    # Each process also keeps what it read from Redis this long, dropped at once when any process
    # announces a change (ADR 0011); 0 = every read asks Redis.
    cache_near_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    rate_limit_per_minute: int = Field(default=10, ge=1)
    auth_rate_limit_per_minute: int = Field(default=5, ge=1)
    # Peers whose X-Forwarded-For is believed (uvicorn's option of the same name): IPs, CIDRs or "*".
    forwarded_allow_ips: str = "127.0.0.1"

    # `python -m app` (make run, the image): uvicorn processes serving this host's port.
    web_concurrency: int = Field(default=1, ge=1, le=64)

    # What an operator sees (ADR 0018, docs/operations.md). /metrics answers a bearer of METRICS_TOKEN,
    # or, with no token set, clients on loopback and private addresses only.
    metrics_enabled: bool = True
    metrics_token: str | None = None
    # The worker tier's supervisor serves its processes' /metrics here; port 0 = not at all.
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(default=9464, ge=0, le=65535)
    # None = json in production, text in development.
    log_format: Literal["json", "text"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One line per request; off by default because Caddy writes the access log (with the same
    # X-Request-ID). Every 5xx and every request slower than SLOW_REQUEST_SECONDS is logged regardless.
    access_log: bool = False
    slow_request_seconds: float = Field(default=1.0, gt=0)

    upload_concurrency_limit: int = Field(default=10, ge=1, le=1000)
    upload_concurrency_timeout: float = Field(default=30.0, gt=0)
    # The whole body must arrive within this time, so slow senders cannot hold upload slots forever.
    upload_read_timeout_seconds: float = Field(default=120.0, gt=0)

    thumbnail_size: int = Field(default=300, ge=16, le=2048)
    # Renders at once per process. A render's slot is held while its thread waits for a core, the GIL
    # and the disk as well as while it computes, so 2 slots on 2 cores made ~60 thumbnails/s while
    # uploads arrived at 190/s; 6 keep up with 200 KB uploads, 4 no longer do (ADR 0008).
    thumbnail_concurrency: int = Field(default=6, ge=1, le=32)
    thumbnail_timeout_seconds: float = Field(default=30.0, gt=0)
    thumbnail_max_attempts: int = Field(default=5, ge=1, le=50)
    # How often each process that makes thumbnails looks for those whose job was lost (crash,
    # restart, failure): with the lease below, a lost job is taken again within about both (ADR 0016).
    thumbnail_sweep_interval_seconds: float = Field(default=2.0, gt=0)
    # First retry delay after a transient failure; doubles per attempt (with jitter), capped at five minutes.
    thumbnail_retry_base_seconds: float = Field(default=2.0, gt=0)
    # Whether this API process makes thumbnails itself. Unset: yes with JOB_QUEUE=memory (the only
    # way they get made), no with JOB_QUEUE=postgres (the workers do, `python -m app.worker`).
    thumbnail_workers_enabled: bool | None = None

    # The job queue (ADR 0016). `memory`: each API process makes its own uploads' thumbnails (the
    # embedded default, no server needed). `postgres`: jobs go to pgqueuer's tables in DATABASE_URL's
    # PostgreSQL, and worker processes (`python -m app.worker`, any number, on any host) run them.
    job_queue: Literal["memory", "postgres"] = "memory"
    # A job's claim on its image row, renewed every third of it while the job runs: a worker killed
    # mid-job leaves a claim that runs out this many seconds after its last renewal.
    job_lease_seconds: float = Field(default=6.0, ge=1.0, le=600.0)
    # pgqueuer: a picked job whose worker stopped beating its heartbeat this long is picked again.
    job_heartbeat_timeout_seconds: float = Field(default=6.0, ge=1.0, le=600.0)
    # Worker tier: processes (0 = one per core), jobs at once per process (renders among them are
    # bounded by THUMBNAIL_CONCURRENCY), and how long SIGTERM lets running jobs finish before the
    # rest are handed back to the queue.
    worker_processes: int = Field(default=0, ge=0, le=256)
    worker_jobs_per_process: int = Field(default=4, ge=2, le=256)
    worker_shutdown_seconds: float = Field(default=20.0, ge=0.0, le=3600.0)

    # Variants (ADR 0015): the widths `?w=` may ask for, and `<width|full>:<format>` pairs made in the
    # background after each upload (e.g. `300:webp,600:avif`); every other variant is made on request.
    variant_widths: Annotated[tuple[int, ...], NoDecode] = (150, 300, 600, 1200)
    variant_pregenerate: Annotated[tuple[str, ...], NoDecode] = ()
    # Renders at once per process, renders waiting for a slot (past that: 503 with Retry-After; a
    # waiting render holds no image in memory, only its request), and how long one render may take,
    # or wait for a slot, before its requests are told to retry.
    variant_render_concurrency: int = Field(default=2, ge=1, le=32)
    variant_render_queue: int = Field(default=64, ge=0, le=10_000)
    variant_render_timeout_seconds: float = Field(default=30.0, gt=0)
    # All frames of an animated variant together, in pixels: it is encoded in memory.
    variant_max_animation_pixels: int = Field(default=50_000_000, ge=1)
    # Encoders, chosen on measurement (ADR 0015); a change makes new variants (old ones stay unused).
    variant_jpeg_quality: int = Field(default=85, ge=1, le=100)
    variant_webp_quality: int = Field(default=80, ge=1, le=100)
    variant_webp_method: int = Field(default=4, ge=0, le=6)
    variant_avif_quality: int = Field(default=60, ge=1, le=100)
    variant_avif_speed: int = Field(default=8, ge=0, le=10)
    variant_png_compress_level: int = Field(default=6, ge=0, le=9)

    @field_validator("variant_widths", mode="before")
    @classmethod
    def _split_widths(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(int(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("variant_widths")
    @classmethod
    def _sane_widths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 16 <= width <= 8192 for width in value):
            raise ValueError("list one or more widths between 16 and 8192, e.g. 150,300,600,1200")
        return tuple(sorted(set(value)))

    @field_validator("variant_pregenerate", mode="before")
    @classmethod
    def _split_pregenerate(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _pregenerate_names_listed_variants(self) -> Settings:
        formats = ("jpeg", "png", "webp", "avif")
        for item in self.variant_pregenerate:
            width, _, image_format = item.partition(":")
            listed = width == "full" or (width.isdigit() and int(width) in self.variant_widths)
            if image_format not in formats or not listed:
                raise ValueError(
                    f"VARIANT_PREGENERATE: {item!r} is not <width>:<format> with a width from VARIANT_WIDTHS "
                    f"(or full) and a format from {', '.join(formats)}"
                )
        return self

    @field_validator("allowed_content_types", mode="before")
    @classmethod
    def _split_content_types(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip().lower() for part in value.split(",") if part.strip())
        return value

    @field_validator("allowed_content_types")
    @classmethod
    def _known_content_types(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(ALL_CONTENT_TYPES))
        if unknown:
            raise ValueError(f"unsupported types {unknown}; choose from {sorted(ALL_CONTENT_TYPES)}")
        if not value:
            raise ValueError("at least one content type must be allowed")
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("not a valid SQLAlchemy URL (e.g. postgresql+asyncpg://user@host/db)") from None
        if url.drivername not in SUPPORTED_DRIVERS:
            raise ValueError(f"driver {url.drivername!r} is not supported; use one of {sorted(SUPPORTED_DRIVERS)}")
        if url.drivername.startswith("postgresql") and not url.database:
            raise ValueError("a PostgreSQL URL must name a database")
        return value

    @model_validator(mode="after")
    def _postgres_queue_needs_postgres(self) -> Settings:
        if self.job_queue == "postgres" and not self.database_url.startswith("postgresql"):
            raise ValueError("JOB_QUEUE=postgres keeps its jobs in DATABASE_URL's database; it needs PostgreSQL")
        return self

    @property
    def makes_thumbnails_in_api(self) -> bool:
        """Whether an API process runs thumbnail jobs itself (THUMBNAIL_WORKERS_ENABLED, or the queue's default)."""
        if self.thumbnail_workers_enabled is None:
            return self.job_queue == "memory"
        return self.thumbnail_workers_enabled

    @model_validator(mode="after")
    def _delivery_fits_storage(self) -> Settings:
        if self.file_delivery == "accel-redirect" and self.storage_backend != "local":
            raise ValueError("FILE_DELIVERY=accel-redirect serves local files; it needs STORAGE_BACKEND=local")
        if self.file_delivery == "presigned-redirect" and self.storage_backend != "minio":
            raise ValueError("FILE_DELIVERY=presigned-redirect needs STORAGE_BACKEND=minio")
        if not (self.accel_redirect_prefix.startswith("/") and self.accel_redirect_prefix.endswith("/")):
            raise ValueError("ACCEL_REDIRECT_PREFIX must start and end with '/'")
        return self

    @model_validator(mode="after")
    def _animation_limit_covers_a_still(self) -> Settings:
        if self.max_animation_pixels < self.max_image_pixels:
            raise ValueError("MAX_ANIMATION_PIXELS must be at least MAX_IMAGE_PIXELS (a still image is one frame)")
        return self

    @model_validator(mode="after")
    def _production_needs_real_secret(self) -> Settings:
        if self.app_env == "production":
            secret = self.jwt_secret_key
            if secret is None or secret.strip().lower() in PLACEHOLDER_SECRETS:
                raise ValueError("JWT_SECRET_KEY must be set to a real secret when APP_ENV=production")
            if len(secret) < MIN_PRODUCTION_SECRET_LENGTH:
                raise ValueError(
                    f"JWT_SECRET_KEY must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters in production"
                )
        return self

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.app_env == "production" else "text"

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metrics_token")
    @classmethod
    def _blank_token_is_none(cls, value: str | None) -> str | None:
        return value if value else None

    @property
    def max_file_size_bytes(self) -> int:
        return int(self.max_file_size_mb * 1024 * 1024)

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(REDIS_SCHEMES):
            raise ValueError("must start with " + ", ".join(REDIS_SCHEMES))
        if value is not None and value.startswith(REDIS_CLUSTER_SCHEMES):
            _check_cluster_url(value)
        return value

    @property
    def redis_is_cluster(self) -> bool:
        """Whether REDIS_URL names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`)."""
        return self.redis_url is not None and self.redis_url.startswith(REDIS_CLUSTER_SCHEMES)

    @field_validator("database_replica_url")
    @classmethod
    def _valid_replica_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return cls._valid_database_url(value)

    @model_validator(mode="after")
    def _replica_needs_postgres(self) -> Settings:
        if self.database_replica_url is not None and not (
            self.database_url.startswith("postgresql") and self.database_replica_url.startswith("postgresql")
        ):
            raise ValueError(
                "DATABASE_REPLICA_URL is a PostgreSQL streaming replica; DATABASE_URL must be PostgreSQL too"
            )
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def describe_settings_error(error: ValidationError) -> str:
    """One line naming each bad variable, for a clean start-up failure."""
    parts = []
    for item in error.errors():
        name = ".".join(str(part) for part in item["loc"]).upper() or "configuration"
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings_or_exit() -> Settings:
    """Settings from the environment, or one clear line on stderr and exit status 2."""
    try:
        return Settings()
    except ValidationError as error:
        print(f"chitram: {describe_settings_error(error)}", file=sys.stderr)
        raise SystemExit(2) from None


@lru_cache
def get_settings() -> Settings:
    return load_settings_or_exit()
