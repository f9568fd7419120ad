"""Latency, errors and bytes written of every storage backend's operations, as decorators on their methods.

A missing object is an answer, not an error (`StoredObjectMissing` is not counted as one); an unreachable
store, a refused write or a full disk is.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any, BinaryIO, Concatenate, ParamSpec, Protocol, TypeVar

from app.observability.metrics import STORAGE_BYTES_WRITTEN, STORAGE_DURATION, STORAGE_ERRORS

P = ParamSpec("P")
T = TypeVar("T")

# Keys are made by the service (originals/…, thumbnails/…, variants/…); the prefix is the object's kind.
_KINDS = {"originals": "original", "thumbnails": "thumbnail", "variants": "variant"}


class _Named(Protocol):
    name: str


S = TypeVar("S", bound=_Named)


def _failed(error: BaseException) -> bool:
    # A missing object (the backends' StoredObjectMissing is a LookupError) is an answer; so is a cancellation.
    return not isinstance(error, LookupError | FileNotFoundError | asyncio.CancelledError)


def measured_async(
    operation: str,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, T]]], Callable[Concatenate[S, P], Coroutine[Any, Any, T]]
]:
    """Time an async storage method (for reads: until the object is open) and count its failures."""

    def decorate(
        method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
        @functools.wraps(method)
        async def measured(backend: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            try:
                return await method(backend, *args, **kwargs)
            except BaseException as error:
                if _failed(error):
                    STORAGE_ERRORS.labels(backend.name, operation).inc()
                raise
            finally:
                STORAGE_DURATION.labels(backend.name, operation).observe(time.perf_counter() - started)

        return measured

    return decorate


def measured_save(
    method: Callable[[Any, str, BinaryIO, int, str], None],
) -> Callable[[Any, str, BinaryIO, int, str], None]:
    """`save_blocking`: its latency, failures, and the bytes written by kind of object."""

    @functools.wraps(method)
    def measured(self: _Named, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        started = time.perf_counter()
        try:
            method(self, key, source, size, content_type)
        except BaseException:
            STORAGE_ERRORS.labels(self.name, "put").inc()
            raise
        finally:
            STORAGE_DURATION.labels(self.name, "put").observe(time.perf_counter() - started)
        STORAGE_BYTES_WRITTEN.labels(_KINDS.get(key.split("/", 1)[0], "other")).inc(size)

    return measured
