"""Reference ASGI apps served by the same uvicorn command line as Chitram, for the ceilings.

- `starlette_json`: a fixed ~400-byte JSON body, serialised per request; what one uvicorn worker
  can do for a request that touches nothing (the ceiling of scenario 1).
- `naive_s3`: GET an object from S3 with minio's `get_object().read()` and return the bytes whole;
  the baseline that "through S3" is compared with in scenario 2.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import urllib3
from minio import Minio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

# Shaped like Chitram's ImageRead, so serialising it costs about what the real payload does.
FIXED_METADATA = {
    "id": str(uuid.UUID(int=0x5EED)),
    "filename": "holiday-photo-2024-06-01.jpg",
    "content_type": "image/jpeg",
    "file_size": 512_000,
    "width": 1200,
    "height": 900,
    "checksum": "9f2b5c1e" * 8,
    "created_at": datetime(2024, 6, 1, 12, 0, tzinfo=UTC).isoformat(),
    "thumbnail_status": "ready",
    "url": f"/api/v1/images/{uuid.UUID(int=0x5EED)}/file",
    "thumbnail_ready": True,
    "thumbnail_url": f"/api/v1/images/{uuid.UUID(int=0x5EED)}/thumbnail",
}


def starlette_json() -> Starlette:
    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(FIXED_METADATA)

    return Starlette(routes=[Route("/metadata", metadata)])


def naive_s3() -> Starlette:
    """Reads BENCH_S3_ENDPOINT and BENCH_S3_BUCKET; moto accepts any credentials."""
    bucket = os.environ["BENCH_S3_BUCKET"]
    client = Minio(
        os.environ["BENCH_S3_ENDPOINT"],
        access_key="bench",
        secret_key="bench-secret",
        secure=False,
        region="us-east-1",
        http_client=urllib3.PoolManager(maxsize=32),
    )

    def read_whole(key: str) -> bytes:
        response = client.get_object(bucket, key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def health(request: Request) -> Response:
        return Response("ok")

    async def get_object(request: Request) -> Response:
        body = await run_in_threadpool(read_whole, request.path_params["key"])
        return Response(body, media_type="image/jpeg")

    return Starlette(routes=[Route("/health", health), Route("/objects/{key:path}", get_object)])
