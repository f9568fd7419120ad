"""The application factory: `create_app(settings)` wires engine, storage, Redis, jobs, routers and handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import version
from typing import Any

from fastapi import FastAPI
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.api import auth, docs, health, image_sharing, images, metrics, users, web_account, web_forms, web_pages
from app.api.errors import install_error_handlers
from app.api.near_cache_hits import NearCacheHitMiddleware
from app.api.rate_limits import RateLimitMiddleware
from app.api.web_errors import install_web_error_handlers
from app.api.web_support import STATIC_DIR, VersionedStaticFiles, create_templates
from app.config import Settings, get_settings
from app.database import create_engine, create_replica_engine, create_sessionmaker
from app.jobs.queue import JobQueue, QueuedThumbnails
from app.jobs.resources import JobResources
from app.jobs.worker import Worker
from app.observability import metrics as app_metrics
from app.observability.logs import configure_logging, name_requests_on_records
from app.observability.request_context import RequestContextMiddleware
from app.observability.tracing import configure_tracing, instrument_app, instrument_engine, shutdown_tracing
from app.schemas.errors import document_framework_errors
from app.services import expiry
from app.services.cache import MetadataCache
from app.services.concurrency import UploadSlots
from app.services.hot_files import HotFiles
from app.services.rate_limit import RateLimiter
from app.services.read_routing import ReadRouter
from app.services.redis_client import RedisHandle
from app.services.storage import WHOLE_READ_LIMIT, build_storage
from app.services.thumbnail_jobs import ThumbnailJobs
from app.services.variants import VariantService
from app.utils.malloc_arenas import limit_malloc_arenas

logger = logging.getLogger(__name__)

SESSION_COOKIE_NAME = "chitram_session"
LISTENER_STOP_SECONDS = 1.0
DESCRIPTION = """
Chitram is a self-hosted image host. Upload a JPEG, PNG, WebP, GIF, AVIF or HEIC image (stored
without its location and camera metadata, and once however often it is uploaded), get its metadata,
a direct link and a 300 px thumbnail. Log in (Authorize, top right) to own your uploads; anonymous uploads get a
one-time delete token instead.

Tools use an API key (`chk_...`, made at `POST /api/v1/users/me/api-keys`), sent as `Authorization: Bearer <key>`
or in the `X-API-Key` header wherever a login's token is accepted, within the key's scopes (`images:read`,
`images:upload`, `images:delete`; a request outside them is 403 `INSUFFICIENT_SCOPE`).

Every error has one shape: `{"detail": {"code": "...", "message": "...", "details": {...}}}`;
`code` is stable and listed with each endpoint's responses. `details.request_id` (also the `X-Request-ID`
header of every answer) names the request in the server's logs.
"""


class ChitramAPI(FastAPI):
    """FastAPI whose OpenAPI document describes the framework's own errors as the app answers them."""

    def openapi(self) -> dict[str, Any]:
        return document_framework_errors(super().openapi())


def _jwt_secret(settings: Settings) -> str:
    if settings.jwt_secret_key:
        return settings.jwt_secret_key
    # Development without a configured secret: a random one per process, so no guessable default
    # ever signs a token. Production refuses to start without one (see Settings).
    logger.warning("JWT_SECRET_KEY is not set: using a random secret; tokens end when the process does")
    return secrets.token_urlsafe(48)


def create_app(settings: Settings) -> FastAPI:
    """Build the ASGI app for these settings; nothing is connected until start-up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        replica_engine = create_replica_engine(settings)
        instrument_engine(*([engine] if replica_engine is None else [engine, replica_engine]))
        sessionmaker = create_sessionmaker(engine)
        storage = build_storage(settings)
        redis = RedisHandle(settings.redis_url)
        cache = MetadataCache(
            redis,
            key_prefix=settings.cache_key_prefix,
            ttl_seconds=settings.cache_ttl_seconds,
            near_ttl_seconds=settings.cache_near_ttl_seconds,
        )
        variants = VariantService(sessionmaker=sessionmaker, storage=storage, settings=settings)
        thumbnails = ThumbnailJobs(sessionmaker=sessionmaker, storage=storage, settings=settings, variants=variants)
        tasks: list[asyncio.Task[None]] = []
        listener: asyncio.Task[None] | None = None
        queue: JobQueue | None = None
        stop_worker = asyncio.Event()
        pool_capacity = settings.db_pool_size + settings.db_max_overflow
        try:
            if settings.metrics_enabled:
                app_metrics.announce_build()
                app_metrics.watch_pool(engine, pool_capacity)
                tasks.append(asyncio.create_task(app_metrics.flush_every_second(), name="metrics-flush"))
            await storage.startup()
            app.state.engine = engine
            app.state.sessionmaker = sessionmaker
            # Metadata reads, listings and pages: on the replica when it has caught up (ADR 0019).
            app.state.reads = ReadRouter(sessionmaker, replica_engine)
            app.state.storage = storage
            app.state.redis = redis
            app.state.cache = cache
            app.state.hot_files = HotFiles(
                max_bytes=settings.file_cache_mb * 1024 * 1024, max_object_bytes=WHOLE_READ_LIMIT
            )
            app.state.rate_limiter = RateLimiter(redis, key_prefix=f"{settings.cache_key_prefix}ratelimit")
            app.state.upload_slots = UploadSlots(settings.upload_concurrency_limit, settings.upload_concurrency_timeout)
            app.state.variants = variants
            # Plain tasks, not a task group around the yield: the lifespan's start and end may run in
            # different tasks (test runners do this), which a cancel scope forbids.
            if settings.job_queue == "postgres":
                queue = await JobQueue.open(settings)
                app.state.job_queue = queue
                app.state.thumbnails = QueuedThumbnails(queue)
                if settings.makes_thumbnails_in_api:  # told to: a worker in this process too
                    resources = JobResources(settings, sessionmaker, storage, thumbnails, variants, cache)
                    worker = Worker(resources, queue)
                    tasks.append(asyncio.create_task(worker.run(stop_worker), name="job-worker"))
            else:
                app.state.job_queue = None
                app.state.thumbnails = thumbnails
                if settings.makes_thumbnails_in_api:
                    tasks.append(asyncio.create_task(thumbnails.run(), name="thumbnail-jobs"))
                    # Background work runs here, so removing expired images does too (a worker's, otherwise).
                    sweeps = expiry.run_sweeps(sessionmaker, storage, cache, settings.expiry_sweep_interval_seconds)
                    tasks.append(asyncio.create_task(sweeps, name="expiry-sweeps"))
            listener = asyncio.create_task(cache.listen_for_invalidations(), name="cache-invalidations")
            logger.info(
                "chitram started: env=%s storage=%s redis=%s replica=%s",
                settings.app_env,
                storage.name,
                redis.state(),
                "yes" if replica_engine is not None else "no",
            )
            yield
        finally:
            cache.stop_listening()
            stop_worker.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if listener is not None:
                listener.cancel()
                # Not awaited without a bound: a cancellation that lands as redis-py's read time-out fires
                # can be swallowed, and that read then hung past its time-out in tests; asked to stop
                # (above), the listener returns within one poll interval in the usual case.
                await asyncio.wait({listener}, timeout=LISTENER_STOP_SECONDS)
            await thumbnails.close()
            if queue is not None:
                await queue.close()
            await redis.close()
            await storage.close()
            await engine.dispose()
            if replica_engine is not None:
                await replica_engine.dispose()
            if settings.metrics_enabled:
                app_metrics.unwatch_pool(pool_capacity)
            shutdown_tracing()  # the spans still buffered are sent before the process ends

    app = ChitramAPI(
        title="Chitram",
        version=version("chitram"),
        description=DESCRIPTION,
        debug=False,  # our own handler decides what a 500 shows, by settings.debug
        lifespan=lifespan,
        docs_url=None,  # served by app.api.docs from vendored assets instead of a CDN
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    name_requests_on_records()
    app.state.jwt_secret = _jwt_secret(settings)
    app.state.session_cookie_name = SESSION_COOKIE_NAME
    app.state.templates = create_templates(settings)
    install_error_handlers(app, debug=settings.debug)
    install_web_error_handlers(app)
    app.include_router(images.router)
    app.include_router(image_sharing.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(docs.router)
    app.include_router(web_pages.router)
    app.include_router(web_forms.router)
    app.include_router(web_account.router)
    app.mount("/static", VersionedStaticFiles(directory=STATIC_DIR), name="static")
    # Added last = runs first: the client address is resolved before anything is counted by it.
    app.add_middleware(NearCacheHitMiddleware)
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.forwarded_allow_ips)
    # Outermost: it sees the real peer (whose X-Request-ID only a trusted proxy may set) and times everything.
    app.add_middleware(
        RequestContextMiddleware,
        trusted_peers=settings.forwarded_allow_ips,
        metrics_enabled=settings.metrics_enabled,
        access_log=settings.access_log,
        slow_request_seconds=settings.slow_request_seconds,
    )
    instrument_app(app)  # outside every middleware above; nothing when tracing is off
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory app.main:app_factory`: settings from the environment."""
    return create_serving_app(get_settings())


def create_serving_app(settings: Settings) -> FastAPI:
    """The app of a serving process (`app_factory`, `python -m app`): built, then frozen in place.

    Everything built so far (modules, routes, schemas, the Jinja environment) lives as long as the
    process. A full garbage collection walks every tracked object with the GIL held: on a 2-core
    machine under upload load that was a ~100 ms stall of every request in flight every 10-20 s,
    enough to set the uploads' p99. `gc.freeze()` takes them out of its sight (a full collection
    then took ~8 ms); garbage made before is collected first. Frozen objects are never collected,
    which suits objects that live for good; what the lifespan builds later (engine, pools, Redis
    clients) is not frozen. `create_app` alone freezes nothing: a test process builds many apps
    and should collect them.
    """
    # Before the app starts any thread: a serving process decodes uploads on many (app.utils.malloc_arenas).
    limit_malloc_arenas()
    configure_logging(settings.effective_log_format, settings.log_level)
    configure_tracing("chitram-api")  # before the app is built: instrument_app needs it
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app
