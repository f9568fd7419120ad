"""Storage in a folder on the local disk, for development and single-host deployments."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import AsyncGenerator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import anyio
import anyio.to_thread

from app.errors import StorageUnavailable
from app.observability.storage_metrics import measured_async, measured_save
from app.services.storage.base import CHUNK_SIZE, StorageBackend, StoredObjectMissing, first_read_size

STORED_FILE_MODE = 0o644
# Created new, never followed through a link, not inherited by child processes (as mkstemp does).
_CREATE_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class LocalStorage(StorageBackend):
    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def free_bytes(self) -> int | None:
        usage = await anyio.to_thread.run_sync(shutil.disk_usage, self.root)
        return usage.free

    def path_for(self, key: str) -> Path:
        """The file that holds `key`; raises ValueError for a key that could leave the root."""
        # Keys are made by the service, never by users; checked anyway so a bug cannot write outside the root.
        # The check is lexical (no filesystem calls) so it can run on the event loop.
        if not key or "\\" in key or "\x00" in key or key.startswith("/"):
            raise ValueError(f"invalid storage key {key!r}")
        parts = PurePosixPath(key).parts
        # PurePosixPath drops "." and empty segments; a part count that differs means the key had them.
        if ".." in parts or len(parts) != key.count("/") + 1:
            raise ValueError(f"invalid storage key {key!r}")
        return self.root.joinpath(*parts)

    async def startup(self) -> None:
        """Create the storage folder."""
        try:
            await anyio.to_thread.run_sync(lambda: self.root.mkdir(parents=True, exist_ok=True))
        except OSError as error:
            raise StorageUnavailable(f"cannot create the storage folder {self.root}: {error.strerror}") from error

    @measured_save
    def save_blocking(self, key: str, source: BinaryIO, size: int, content_type: str) -> None:
        """Write `size` bytes from `source` to a temporary file, then move it into place atomically."""
        try:
            _write_atomically(self.path_for(key), source, size)
        except OSError as error:
            raise StorageUnavailable() from error

    @measured_async("get")
    async def open_range(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Open `key` and return an iterator over bytes `start..end` (inclusive)."""
        _check_range(start, end)
        path = self.path_for(key)
        length = None if end is None else end - start + 1
        try:
            # Open, seek and read the first MiB in one thread hop: most images are served whole by it.
            file, first = await anyio.to_thread.run_sync(_open_and_read_first, path, start, length)
        except FileNotFoundError:
            raise StoredObjectMissing(key) from None
        except OSError as error:
            raise StorageUnavailable() from error
        return _read_chunks(file, first, None if length is None else length - len(first))

    @measured_async("get")
    async def read_all(self, key: str) -> bytes:
        """The whole file in one thread hop."""
        path = self.path_for(key)
        try:
            return await anyio.to_thread.run_sync(path.read_bytes)
        except FileNotFoundError:
            raise StoredObjectMissing(key) from None
        except OSError as error:
            raise StorageUnavailable() from error

    @measured_async("delete")
    async def delete(self, key: str) -> None:
        """Remove `key`; a missing file is fine."""
        path = self.path_for(key)
        try:
            await anyio.to_thread.run_sync(lambda: path.unlink(missing_ok=True))
        except OSError as error:
            raise StorageUnavailable() from error

    @measured_async("exists")
    async def exists(self, key: str) -> bool:
        """Whether a file for `key` exists."""
        path = self.path_for(key)
        return await anyio.to_thread.run_sync(path.is_file)

    async def health_check(self) -> bool:
        """True when the storage folder exists and is writable."""
        try:
            return await anyio.to_thread.run_sync(_is_writable_dir, self.root)
        except Exception:
            return False


def _check_range(start: int, end: int | None) -> None:
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range {start}-{end}")


def _write_atomically(path: Path, source: BinaryIO, size: int) -> None:
    """Copy `size` bytes into a temporary file beside `path`, fsync it, and rename it over `path`.

    Plain `os` calls on one descriptor: every system call here gives up the GIL and must take it back,
    which under upload load means waiting for busy threads, so none is made that the write does not
    need (no folder check per file, no buffered file object and its isatty and seek).
    """
    final = os.fspath(path)
    folder = os.path.dirname(final)
    # Same folder as the target, so os.replace is a rename on one filesystem and readers never see half a file.
    temp_name = os.path.join(folder, f".{os.path.basename(final)}.{secrets.token_hex(8)}.part")
    try:
        fd = os.open(temp_name, _CREATE_EXCLUSIVE, STORED_FILE_MODE)
    except FileNotFoundError:
        # The key's folder (thumbnails/) does not exist yet: the first file written into it makes it.
        os.makedirs(folder, exist_ok=True)
        fd = os.open(temp_name, _CREATE_EXCLUSIVE, STORED_FILE_MODE)
    try:
        try:
            # The mode regardless of the umask: the reverse proxy that may serve these files reads them.
            os.fchmod(fd, STORED_FILE_MODE)
            remaining = size
            while remaining > 0:
                chunk = source.read(min(CHUNK_SIZE, remaining))
                if not chunk:
                    raise ValueError(f"source ended {remaining} bytes before the announced size")
                _write_all(fd, chunk)
                remaining -= len(chunk)
            # Without fsync a crash right after the rename could leave an empty file under the final name.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp_name, final)
    except BaseException:
        # Also when the copy failed half-way: no half-written file is left behind.
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open_and_read_first(path: Path, start: int, length: int | None) -> tuple[BinaryIO | None, bytes]:
    """The open file positioned after the first chunk (None once everything is read), and that chunk."""
    file = path.open("rb")
    try:
        file.seek(start)
        first = file.read(first_read_size(length))
        if length is not None and len(first) >= length:
            file.close()
            return None, first
    except BaseException:
        file.close()
        raise
    return file, first


def _is_writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


async def _read_chunks(file: BinaryIO | None, first: bytes, length: int | None) -> AsyncGenerator[bytes, None]:
    try:
        if first:
            yield first
        if file is None or (length is None and len(first) < CHUNK_SIZE):
            return  # everything was in the first read
        remaining = length
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            try:
                chunk = await anyio.to_thread.run_sync(file.read, size)
            except OSError as error:
                raise StorageUnavailable() from error
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
    finally:
        # Closing a file opened for reading does not block; doing it inline also works when cancelled.
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()
