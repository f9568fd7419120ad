"""Cached metadata answered before routing: the hottest read skips the framework's per-request work.

`GET /api/v1/images/{id}` is what every embed and client polls. When the process's near copy
(ADR 0011) holds the image, the answer is fixed bytes, so this middleware sends them itself, the
way a response cache in front of an app does; everything else (misses, other forms of the id,
other routes) goes on to FastAPI, where `images.read_image` answers as before. The response is the
one that route would send, header for header (a test compares the two).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.services.cache import MetadataCache

METADATA_PATH_PREFIX = "/api/v1/images/"


class NearCacheHitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(METADATA_PATH_PREFIX):
                # Near copies are keyed by the canonical id, so "<id>/file", "upload" or an id spelt
                # another way simply finds nothing here and is routed as usual.
                cache: MetadataCache = scope["app"].state.cache
                metadata = cache.near.get(path[len(METADATA_PATH_PREFIX) :])
                if metadata is not None:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 200,
                            "headers": [
                                (b"content-length", str(len(metadata.body)).encode()),
                                (b"content-type", b"application/json"),
                                (b"x-cache", b"HIT"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": metadata.body})
                    return
        await self.app(scope, receive, send)
