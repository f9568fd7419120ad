"""Storage in an S3-compatible bucket (MinIO, AWS, moto) through the synchronous `minio` client.

Every client call runs in a worker thread. The HTTP pool has short timeouts and few retries so a
dead endpoint costs seconds, not the minutes of the client's defaults. The bucket stays private:
images reach clients through the app or through presigned URLs, never through a bucket policy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, Callable, Mapping
from datetime import timedelta
from typing import BinaryIO, TypeVar

import anyio
import anyio.to_thread
import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.response import BaseHTTPResponse

from app.errors import StorageUnavailable
from app.observability.storage_metrics import measured_async, measured_save
from app.services.storage.base import CHUNK_SIZE, StorageBackend, StoredObjectMissing, first_read_size

logger = logging.getLogger(__name__)

# The smallest part S3 accepts; put_object holds one part in memory, so smaller is cheaper.
PART_SIZE = 5 * 1024 * 1024
POOL_SIZE = 32
CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 30.0
HEALTH_CHECK_TIMEOUT_SECONDS = 2.0
MISSING_KEY_CODES = frozenset({"NoSuchKey", "NoSuchObject"})

# What a failing store looks like from here: transport errors (urllib3 wraps socket errors) and S3 error
# replies. OSError stays out: minio raises it for a source shorter than announced, a caller's bug.
NETWORK_ERRORS = (HTTPError, MinioException)

T = TypeVar("T")


def build_http_client() -> urllib3.PoolManager:
    """An HTTP pool that gives up on a dead endpoint within seconds."""
    return urllib3.PoolManager(
        maxsize=POOL_SIZE,
        timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_SECONDS, read=READ_TIMEOUT_SECONDS),
        retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=(500, 502, 503, 504)),
        # The same trust store the minio client uses by default.
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
    )


class S3Storage(StorageBackend):
    name = "minio"

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool = False,
        region: str = "us-east-1",
        startup_timeout_seconds: float = 10.0,
    ) -> None:
        self.endpoint = endpoint
        self.bucket = bucket
        self.region = region
        self.startup_timeout_seconds = startup_timeout_seconds
        self._http = build_http_client()
        # A fixed region spares the client a GetBucketLocation round trip before each first call.
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=self._http,
        )

    async def startup(self) -> None:
        """Create the bucket if it is missing, within `startup_timeout_seconds`."""
        try:
            with anyio.fail_after(self.startup_timeout_seconds):
                await anyio.to_thread.run_sync(self._ensure_bucket, abandon_on_cancel=True)
        except TimeoutError:
            raise StorageUnavailable(
                f"object store at {self.endpoint} did not answer within {self.startup_timeout_seconds:g} s"
            ) from None
        except NETWORK_ERRORS as error:
            raise StorageUnavailable(
                f"cannot prepare bucket {self.bucket!r} at {self.endpoint}: {_describe(error)}"
            ) from error

    async def close(self) -> None:
        """Close pooled connections."""
        self._http.clear()

    @measured_save
    def save_blocking(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        """Upload `size` bytes from `source` under `key`, one part at a time."""
        self._mapped(
            lambda: self._client.put_object(
                self.bucket,
                key,
                source,
                length=size,
                content_type=content_type,
                part_size=PART_SIZE,
                # Sequential parts keep at most one part in memory and no extra threads per upload.
                num_parallel_uploads=1,
            )
        )

    @measured_async("get")
    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Open `key` and return an iterator over bytes `start..end` (inclusive)."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range {start}-{end}")
        # minio reads length 0 as "to the end of the object".
        length = 0 if end is None else end - start + 1
        # Request and first MiB in one thread hop: most images then need no further hop at all.
        response, first = await self._call(lambda: self._get_with_first_chunk(key, start, length))
        return self._read_chunks(response, first, length or None)

    def _get_with_first_chunk(self, key: str, start: int, length: int) -> tuple[BaseHTTPResponse, bytes]:
        response = self._client.get_object(self.bucket, key, offset=start, length=length)
        try:
            wanted = first_read_size(length or None)
            return response, response.read(wanted)
        except BaseException:
            response.close()
            response.release_conn()
            raise

    @measured_async("delete")
    async def delete(self, key: str) -> None:
        """Remove `key`; S3 answers a delete of a missing key with success."""
        await self._call(lambda: self._client.remove_object(self.bucket, key))

    @measured_async("exists")
    async def exists(self, key: str) -> bool:
        """Whether `key` is in the bucket."""
        try:
            await self._call(lambda: self._client.stat_object(self.bucket, key))
        except StoredObjectMissing:
            return False
        return True

    async def health_check(self) -> bool:
        """True when the bucket answers within a couple of seconds."""
        try:
            with anyio.fail_after(HEALTH_CHECK_TIMEOUT_SECONDS):
                return await anyio.to_thread.run_sync(self._client.bucket_exists, self.bucket, abandon_on_cancel=True)
        except Exception:
            return False

    async def presigned_get_url(
        self, key: str, expires_seconds: int, response_headers: Mapping[str, str] | None = None
    ) -> str:
        """A URL that lets anyone GET `key` for `expires_seconds`, with optional response header overrides."""
        headers: dict[str, str | list[str] | tuple[str]] | None = dict(response_headers) if response_headers else None
        # Signing is local (the region is fixed), but it stays off the loop like every client call.
        return await self._call(
            lambda: self._client.presigned_get_object(
                self.bucket, key, expires=timedelta(seconds=expires_seconds), response_headers=headers
            )
        )

    def _ensure_bucket(self) -> None:
        if self._client.bucket_exists(self.bucket):
            return
        try:
            self._client.make_bucket(self.bucket, location=self.region)
        except S3Error as error:
            # Another worker starting at the same moment may have created it first.
            if error.code != "BucketAlreadyOwnedByYou":
                raise

    async def _call(self, function: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(self._mapped, function)

    def _mapped(self, function: Callable[[], T]) -> T:
        """Run a blocking minio call, its failures as the storage interface names them."""
        try:
            return function()
        except S3Error as error:
            if error.code in MISSING_KEY_CODES:
                raise StoredObjectMissing(error.object_name) from None
            raise self._unavailable(error) from error
        except NETWORK_ERRORS as error:
            raise self._unavailable(error) from error

    def _unavailable(self, error: Exception) -> StorageUnavailable:
        # Clients get the generic message; operators get the endpoint and cause (never credentials).
        logger.warning("object store at %s failed: %s", self.endpoint, _describe(error))
        return StorageUnavailable()

    async def _read_chunks(
        self, response: BaseHTTPResponse, first: bytes, length: int | None
    ) -> AsyncGenerator[bytes, None]:
        received = len(first)
        finished = length is not None and received >= length
        try:
            if first:
                yield first
            while not finished:
                try:
                    chunk = await anyio.to_thread.run_sync(response.read, CHUNK_SIZE)
                except NETWORK_ERRORS as error:
                    raise self._unavailable(error) from error
                if not chunk:
                    finished = True
                    return
                received += len(chunk)
                finished = length is not None and received >= length
                yield chunk
        finally:
            if not finished:
                # Unread bytes are still on the wire: this connection cannot be reused.
                response.close()
            # A fully read response goes back to the pool, so the next request skips a new connection.
            response.release_conn()


def _describe(error: Exception) -> str:
    if isinstance(error, S3Error):
        return f"S3 error {error.code}"
    # The retry wrapper's text repeats the URL; its reason is the part worth reading.
    if isinstance(error, MaxRetryError) and error.reason is not None:
        error = error.reason
    return f"{type(error).__name__}: {error}"
