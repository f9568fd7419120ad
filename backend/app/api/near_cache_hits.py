"""Near-cache hits answered before routing: the hottest reads skip the framework's per-request work.

`GET /api/v1/images/{id}` and its direct link `/file` are what every embed and client fetches.
When the process's near copy (ADR 0011) holds the image, the metadata answer is fixed bytes, and a
plain download (no Range or validators) is either the proxy's redirect or a file held in memory;
this middleware sends those itself, the way a response cache in front of an app does. So it does for
a variant (`/file?w=&format=`, ADR 0015) that this process has served already and holds in memory:
routing alone costs several times such an answer. Everything else (misses, Range requests, other
spellings of the id, other routes) goes on to FastAPI, where `images.read_image` and
`images.download_image` answer as before. Both answers are built by the
same code, and tests compare them header for header.

A near copy is never a private image's (`cache.cacheable`), and one whose image has reached its
`expires_at` or that is asked for with a share link's `exp`/`sig` goes on to the route too, which refuses
or checks it (ADR 0017); an image that ends is answered here with the caching the route would give.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.file_responses import whole_file_response
from app.api.variant_query import file_query_of
from app.errors import InvalidVariant
from app.observability.metrics import TALLY
from app.observability.request_context import ROUTE_TEMPLATE_KEY
from app.services import image_access
from app.services.cache import MetadataCache
from app.services.delivery import original_from_metadata
from app.services.image_access import PUBLIC_FOREVER, Caching

IMAGES_PREFIX = "/api/v1/images/"
FILE_SUFFIX = "/file"
METADATA_ROUTE = IMAGES_PREFIX + "{image_id}"
FILE_ROUTE = METADATA_ROUTE + FILE_SUFFIX


class NearCacheHitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"].startswith(IMAGES_PREFIX):
            response = _answer_from_near_copy(scope)
            if response is not None:
                TALLY.cache_lookup("near", "hit")
                # The route FastAPI would have matched, for the request's metrics.
                scope[ROUTE_TEMPLATE_KEY] = FILE_ROUTE if scope["path"].endswith(FILE_SUFFIX) else METADATA_ROUTE
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _answer_from_near_copy(scope: Scope) -> Response | None:
    state = scope["app"].state
    cache: MetadataCache = state.cache
    rest: str = scope["path"][len(IMAGES_PREFIX) :]
    # Near copies are keyed by the canonical id, so "upload", "<id>/thumbnail" or an id spelt another
    # way simply finds nothing here and is routed as usual.
    if rest.endswith(FILE_SUFFIX):
        metadata = cache.near.get(rest[: -len(FILE_SUFFIX)])
        if metadata is None:
            return None
        caching = _public_caching(metadata.value)
        if caching is None:
            return None
        if scope["query_string"]:
            return _warm_variant(scope, metadata.value, caching)
        stored = original_from_metadata(metadata.value)
        return whole_file_response(scope["headers"], stored, state.settings, state.hot_files, caching)
    metadata = cache.near.get(rest)
    if metadata is None or _public_caching(metadata.value) is None:
        return None
    return Response(metadata.body, media_type="application/json", headers={"X-Cache": "HIT"})


def _public_caching(metadata: dict[str, Any]) -> Caching | None:
    """How an answer about this image may be cached, or None when the route must decide (private, expired)."""
    if not image_access.restricted(metadata):
        return PUBLIC_FOREVER
    if image_access.is_private(metadata) or image_access.is_expired(metadata):
        return None
    return image_access.file_caching(metadata, private=False)


def _warm_variant(scope: Scope, metadata: dict[str, Any], caching: Caching) -> Response | None:
    """A variant this process has served before, whole from memory; None for the route to answer.

    The same steps as `images.download_image` once the metadata is known: a query the route would refuse,
    a variant not yet remembered, or bytes not in memory go on to the route.
    """
    state = scope["app"].state
    accept = next((value.decode("latin-1") for name, value in scope["headers"] if name == b"accept"), None)
    try:
        query = file_query_of(scope["query_string"], accept, state.settings.variant_widths)
    except InvalidVariant:
        return None
    asked = query.variant
    if asked is None or query.share is not None:
        return None
    recipe = asked.recipe_for(metadata)
    ready = state.variants.remembered(metadata["checksum"], recipe)
    if ready is None:
        return None
    stored = ready.as_file(metadata["filename"], recipe)
    response = whole_file_response(scope["headers"], stored, state.settings, state.hot_files, caching)
    if response is not None and asked.negotiated:
        response.headers["Vary"] = "Accept"
    return response
