"""The storage contract, run against the local folder and against S3 (moto's server over HTTP).

Every backend must behave the same to the service: identical bytes back, inclusive ranges,
`StoredObjectMissing` for unknown keys, and `StorageUnavailable` (never a raw transport error)
when the store is gone.
"""

from __future__ import annotations

import io
import os
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

import httpx
import pytest
import pytest_asyncio
from minio import Minio
from minio.error import S3Error
from moto.server import ThreadedMotoServer

from app.errors import StorageUnavailable
from app.services.storage import StorageBackend, StoredObjectMissing
from app.services.storage.local import CHUNK_SIZE, LocalStorage
from app.services.storage.s3 import S3Storage

ACCESS_KEY = "storage-contract-access"
SECRET_KEY = "storage-contract-secret"
LARGE_PAYLOAD_SIZE = 5 * 1024 * 1024
# Bigger than two read chunks, so ranges cross chunk boundaries.
RANGE_PAYLOAD = os.urandom(2 * CHUNK_SIZE + 12345)
# A dead endpoint must fail well inside this, though start-up may wait longer for a slow one.
DEAD_ENDPOINT_DEADLINE_SECONDS = 5.0

pytestmark = pytest.mark.asyncio


def unique_bucket() -> str:
    return f"storage-test-{uuid.uuid4().hex[:16]}"


def unique_key(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4()}.jpg"


def make_s3_storage(endpoint: str, bucket: str | None = None, startup_timeout_seconds: float = 10.0) -> S3Storage:
    return S3Storage(
        endpoint=endpoint,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        bucket=bucket or unique_bucket(),
        secure=False,
        startup_timeout_seconds=startup_timeout_seconds,
    )


def admin_client(endpoint: str) -> Minio:
    """A plain client that inspects the bucket behind the backend's back."""
    return Minio(endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False, region="us-east-1")


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


@pytest_asyncio.fixture(params=["local", "s3"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str) -> AsyncIterator[StorageBackend]:
    """A started backend with nothing stored yet."""
    backend: StorageBackend = (
        LocalStorage(tmp_path / "images") if request.param == "local" else make_s3_storage(s3_endpoint)
    )
    await backend.startup()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def large_payload_file(tmp_path: Path) -> Iterator[tuple[BinaryIO, bytes]]:
    """A 5 MB random file on disk, open for reading, with its expected content."""
    content = os.urandom(LARGE_PAYLOAD_SIZE)
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    with path.open("rb") as file:
        yield file, content


@pytest.fixture
def dead_endpoint() -> str:
    """`host:port` where nothing listens (a port the OS just handed out and took back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


async def test_saved_file_streams_back_identical(
    storage: StorageBackend, large_payload_file: tuple[BinaryIO, bytes]
) -> None:
    source, content = large_payload_file
    key = unique_key()

    await storage.save(key, source, len(content), "image/jpeg")

    assert await storage.exists(key)
    assert await read_all(await storage.open_range(key)) == content


async def test_key_in_subfolder_is_stored(storage: StorageBackend) -> None:
    key = unique_key("thumbnails/")

    await storage.save(key, io.BytesIO(b"thumbnail"), 9, "image/jpeg")

    assert await read_all(await storage.open_range(key)) == b"thumbnail"


@pytest.mark.parametrize(
    ("start", "end"),
    [
        pytest.param(1000, None, id="start-only"),
        pytest.param(CHUNK_SIZE - 10, CHUNK_SIZE + 10, id="across-chunk-boundary"),
        pytest.param(len(RANGE_PAYLOAD) - 1, None, id="last-byte-open-ended"),
        pytest.param(len(RANGE_PAYLOAD) - 1, len(RANGE_PAYLOAD) - 1, id="last-byte"),
        pytest.param(0, 0, id="first-byte"),
        pytest.param(4321, 4321, id="single-byte"),
        pytest.param(0, None, id="whole"),
    ],
)
async def test_range_returns_exactly_the_inclusive_slice(storage: StorageBackend, start: int, end: int | None) -> None:
    key = unique_key()
    await storage.save(key, io.BytesIO(RANGE_PAYLOAD), len(RANGE_PAYLOAD), "image/png")

    received = await read_all(await storage.open_range(key, start, end))

    assert received == RANGE_PAYLOAD[start : None if end is None else end + 1]


async def test_open_range_of_missing_key_raises_missing(storage: StorageBackend) -> None:
    with pytest.raises(StoredObjectMissing):
        await storage.open_range(unique_key())


async def test_exists_is_false_for_missing_key(storage: StorageBackend) -> None:
    assert not await storage.exists(unique_key())


async def test_deleted_key_no_longer_exists(storage: StorageBackend) -> None:
    key = unique_key()
    await storage.save(key, io.BytesIO(b"gone soon"), 9, "image/jpeg")

    await storage.delete(key)

    assert not await storage.exists(key)
    with pytest.raises(StoredObjectMissing):
        await storage.open_range(key)


async def test_deleting_missing_key_is_not_an_error(storage: StorageBackend) -> None:
    await storage.delete(unique_key())


async def test_health_check_passes_after_startup(storage: StorageBackend) -> None:
    assert await storage.health_check()


async def test_startup_twice_is_harmless(storage: StorageBackend) -> None:
    await storage.startup()

    assert await storage.health_check()


async def test_local_startup_creates_root_folder(tmp_path: Path) -> None:
    root = tmp_path / "nested" / "images"
    storage = LocalStorage(root)

    await storage.startup()

    assert root.is_dir()


async def test_local_health_check_fails_without_root_folder(tmp_path: Path) -> None:
    assert not await LocalStorage(tmp_path / "never-created").health_check()


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../x", "a\\..\\x", "a\x00b", "", "a//b", "./x"])
async def test_local_rejects_key_that_could_leave_root(tmp_path: Path, key: str) -> None:
    storage = LocalStorage(tmp_path / "images")
    await storage.startup()

    with pytest.raises(ValueError, match="storage key"):
        await storage.save(key, io.BytesIO(b"evil"), 4, "image/jpeg")
    with pytest.raises(ValueError, match="storage key"):
        await storage.open_range(key)
    with pytest.raises(ValueError, match="storage key"):
        await storage.delete(key)
    assert not (tmp_path / "x").exists()


async def test_local_files_are_readable_by_a_proxy_whatever_the_umask(tmp_path: Path) -> None:
    # Caddy or nginx may serve stored files under another user (X-Accel-Redirect): 0644, even when
    # the service runs with a strict umask.
    storage = LocalStorage(tmp_path / "images")
    await storage.startup()
    previous = os.umask(0o077)
    try:
        await storage.save("thumbnails/a.jpg", io.BytesIO(b"jpeg bytes"), 10, "image/jpeg")
    finally:
        os.umask(previous)
    stored = tmp_path / "images" / "thumbnails" / "a.jpg"
    assert stored.read_bytes() == b"jpeg bytes"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644
    assert sorted(path.name for path in stored.parent.iterdir()) == ["a.jpg"]  # no temporary file left


async def test_local_storage_works_with_a_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def watched_replace(source: str, target: str) -> None:
        renames.append((source, target))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", watched_replace)  # a spy: the real rename still happens
    storage = LocalStorage(Path("."))
    await storage.startup()
    await storage.save("a.jpg", io.BytesIO(b"jpeg bytes"), 10, "image/jpeg")
    assert (tmp_path / "a.jpg").read_bytes() == b"jpeg bytes"
    # The temporary file lay beside the target (a rename within one folder), not in "/".
    [(source, target)] = renames
    assert os.path.dirname(source) == os.path.dirname(target) == ""
    assert sorted(os.listdir(tmp_path)) == ["a.jpg"]


async def test_local_save_from_short_source_leaves_no_file(tmp_path: Path) -> None:
    root = tmp_path / "images"
    storage = LocalStorage(root)
    await storage.startup()
    key = unique_key()

    with pytest.raises(ValueError, match="source ended"):
        await storage.save(key, io.BytesIO(b"short"), 1000, "image/jpeg")

    assert list(root.iterdir()) == []


async def test_s3_startup_creates_private_bucket(s3_endpoint: str) -> None:
    bucket = unique_bucket()
    admin = admin_client(s3_endpoint)
    assert not admin.bucket_exists(bucket)
    storage = make_s3_storage(s3_endpoint, bucket)

    await storage.startup()

    assert admin.bucket_exists(bucket)
    with pytest.raises(S3Error) as raised:
        admin.get_bucket_policy(bucket)
    assert raised.value.code == "NoSuchBucketPolicy"


async def test_s3_save_records_content_type(s3_endpoint: str) -> None:
    storage = make_s3_storage(s3_endpoint)
    await storage.startup()
    key = unique_key()

    await storage.save(key, io.BytesIO(b"\x89PNG"), 4, "image/png")

    stat = admin_client(s3_endpoint).stat_object(storage.bucket, key)
    assert stat.content_type == "image/png"


async def test_s3_presigned_url_serves_the_object(s3_endpoint: str) -> None:
    storage = make_s3_storage(s3_endpoint)
    await storage.startup()
    key = unique_key()
    await storage.save(key, io.BytesIO(RANGE_PAYLOAD), len(RANGE_PAYLOAD), "image/jpeg")

    url = await storage.presigned_get_url(key, 60, {"response-content-disposition": 'attachment; filename="cat.jpg"'})

    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == RANGE_PAYLOAD
    assert response.headers["content-disposition"] == 'attachment; filename="cat.jpg"'


async def test_s3_startup_against_dead_endpoint_fails_fast_naming_endpoint(dead_endpoint: str) -> None:
    storage = make_s3_storage(dead_endpoint)
    started = time.monotonic()

    with pytest.raises(StorageUnavailable) as raised:
        await storage.startup()

    assert time.monotonic() - started < DEAD_ENDPOINT_DEADLINE_SECONDS
    assert dead_endpoint in raised.value.message
    assert SECRET_KEY not in raised.value.message
    assert ACCESS_KEY not in raised.value.message


async def test_s3_startup_gives_up_after_its_timeout() -> None:
    # A listener that accepts connections but never answers: only the start-up deadline can end the wait.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        host, port = silent.getsockname()
        storage = make_s3_storage(f"{host}:{port}", startup_timeout_seconds=0.5)
        started = time.monotonic()

        with pytest.raises(StorageUnavailable, match="did not answer within"):
            await storage.startup()

        assert time.monotonic() - started < DEAD_ENDPOINT_DEADLINE_SECONDS


async def test_s3_health_check_is_false_for_dead_endpoint(dead_endpoint: str) -> None:
    storage = make_s3_storage(dead_endpoint)
    started = time.monotonic()

    assert not await storage.health_check()
    assert time.monotonic() - started < DEAD_ENDPOINT_DEADLINE_SECONDS


async def test_s3_save_to_dead_endpoint_raises_unavailable(dead_endpoint: str) -> None:
    storage = make_s3_storage(dead_endpoint)

    with pytest.raises(StorageUnavailable):
        await storage.save(unique_key(), io.BytesIO(b"lost"), 4, "image/jpeg")


async def test_s3_calls_raise_unavailable_once_store_stops() -> None:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    storage = make_s3_storage(f"{host}:{port}")
    try:
        await storage.startup()
        key = unique_key()
        await storage.save(key, io.BytesIO(RANGE_PAYLOAD), len(RANGE_PAYLOAD), "image/jpeg")
        assert await read_all(await storage.open_range(key)) == RANGE_PAYLOAD
    finally:
        server.stop()

    with pytest.raises(StorageUnavailable):
        await storage.open_range(key)
    with pytest.raises(StorageUnavailable):
        await storage.save(unique_key(), io.BytesIO(RANGE_PAYLOAD), len(RANGE_PAYLOAD), "image/jpeg")
    with pytest.raises(StorageUnavailable):
        await storage.exists(key)
    assert not await storage.health_check()
    await storage.close()


async def test_read_all_returns_the_whole_object_and_misses_like_open_range(storage: StorageBackend) -> None:
    payload = os.urandom(600_000)
    await storage.save("whole/read.bin", io.BytesIO(payload), len(payload), "application/octet-stream")
    assert await storage.read_all("whole/read.bin") == payload
    with pytest.raises(StoredObjectMissing):
        await storage.read_all("whole/missing.bin")
