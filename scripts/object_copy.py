"""Copy every stored object out of, or back into, the app's storage: a local folder or an S3 bucket.

It reads the same environment as the app (`app.config.Settings`: STORAGE_BACKEND, LOCAL_STORAGE_PATH,
MINIO_ENDPOINT, MINIO_ACCESS_KEY, MINIO_SECRET_KEY, MINIO_BUCKET, MINIO_SECURE, MINIO_REGION), so it
always talks to the store the app uses. Used by scripts/backup.sh and scripts/restore.sh; run it with
the backend's venv:

  object_copy.py download-all DIR   every object into DIR/objects/<key>, listed in DIR/objects.json
                                    with its size, SHA-256 and content type
  object_copy.py verify DIR         check every file in DIR/objects against DIR/objects.json (no store)
  object_copy.py check-empty        exit 0 if the store holds no object, 1 if it does
  object_copy.py upload-all DIR     into an EMPTY store: checks every file against DIR/objects.json first,
                                    uploads, then reads each object back and compares its SHA-256
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import mimetypes
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "backend"))

from app.config import Settings, load_settings_or_exit  # noqa: E402 - needs the path above
from app.services.storage.local import LocalStorage  # noqa: E402

MANIFEST_NAME = "objects.json"
OBJECTS_DIR = "objects"
MANIFEST_FORMAT = 1
CHUNK_SIZE = 1024 * 1024
DEFAULT_CONTENT_TYPE = "application/octet-stream"
# Same mode the app gives stored files (app/services/storage/local.py).
STORED_FILE_MODE = 0o644


class CopyError(Exception):
    """A condition that stops the copy, with a message for the operator."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str
    content_type: str


class Store(Protocol):
    description: str

    def list_keys(self) -> Iterator[str]: ...
    def download(self, key: str, target: Path) -> str: ...
    def upload(self, key: str, source: Path, content_type: str) -> None: ...
    def sha256(self, key: str) -> str: ...


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


class LocalStore:
    """The app's LocalStorage folder; keys are paths relative to it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.layout = LocalStorage(root)  # its path_for() refuses keys that could leave the root
        self.description = f"local folder {root}"

    def list_keys(self) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            # `.<name>.<random>.part` files are uploads still being written (LocalStorage.save).
            if path.is_file() and not (path.name.startswith(".") and path.name.endswith(".part")):
                yield path.relative_to(self.root).as_posix()

    def download(self, key: str, target: Path) -> str:
        shutil.copyfile(self.layout.path_for(key), target)
        return mimetypes.guess_type(key)[0] or DEFAULT_CONTENT_TYPE

    def upload(self, key: str, source: Path, content_type: str) -> None:
        path = self.layout.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        os.close(fd)
        try:
            shutil.copyfile(source, temp_name)
            os.chmod(temp_name, STORED_FILE_MODE)
            os.replace(temp_name, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
            raise

    def sha256(self, key: str) -> str:
        return file_sha256(self.layout.path_for(key))


class S3Store:
    """A bucket on MinIO or any S3-compatible server, through the same `minio` client the app uses."""

    def __init__(self, settings: Settings) -> None:
        from minio import Minio

        self.bucket = settings.minio_bucket
        self.client = Minio(
            settings.minio_endpoint,
            access_key=settings.minio_access_key,
            secret_key=settings.minio_secret_key,
            secure=settings.minio_secure,
            region=settings.minio_region,
        )
        self.description = f"bucket {self.bucket!r} at {settings.minio_endpoint}"

    def list_keys(self) -> Iterator[str]:
        if not self.client.bucket_exists(self.bucket):
            return
        for item in self.client.list_objects(self.bucket, recursive=True):
            yield item.object_name

    def download(self, key: str, target: Path) -> str:
        stat = self.client.fget_object(self.bucket, key, str(target))
        return str(stat.content_type or DEFAULT_CONTENT_TYPE)

    def upload(self, key: str, source: Path, content_type: str) -> None:
        # A missing bucket is created private (no policy), as the app itself would create it.
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)
        self.client.fput_object(self.bucket, key, str(source), content_type=content_type)

    def sha256(self, key: str) -> str:
        digest = hashlib.sha256()
        response = self.client.get_object(self.bucket, key)
        try:
            for chunk in response.stream(CHUNK_SIZE):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest()


def open_store(settings: Settings) -> Store:
    if settings.storage_backend == "local":
        return LocalStore(settings.local_storage_path)
    return S3Store(settings)


def download_all(store: Store, directory: Path) -> list[StoredObject]:
    objects_dir = directory / OBJECTS_DIR
    objects_dir.mkdir(parents=True, exist_ok=False)
    layout = LocalStorage(objects_dir)
    copied = []
    for key in store.list_keys():
        target = layout.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        content_type = store.download(key, target)
        copied.append(StoredObject(key, target.stat().st_size, file_sha256(target), content_type))
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "source": store.description,
        "objects": [vars(item) for item in copied],
    }
    (directory / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return copied


def read_manifest(directory: Path) -> list[StoredObject]:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        raise CopyError(f"{path} not found: not a backup made by object_copy.py download-all")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != MANIFEST_FORMAT:
        raise CopyError(f"{path}: unknown manifest format {manifest.get('format')!r}")
    return [StoredObject(**item) for item in manifest["objects"]]


def verify_backup_files(directory: Path, objects: list[StoredObject]) -> None:
    layout = LocalStorage(directory / OBJECTS_DIR)
    for item in objects:
        path = layout.path_for(item.key)
        if not path.is_file():
            raise CopyError(f"backup is missing {item.key}")
        if path.stat().st_size != item.size or file_sha256(path) != item.sha256:
            raise CopyError(f"backup copy of {item.key} does not match its checksum in {MANIFEST_NAME}")


def require_empty(store: Store) -> None:
    first = next(store.list_keys(), None)
    if first is not None:
        raise CopyError(f"{store.description} is not empty (it holds {first!r}); restore only into empty storage")


def upload_all(store: Store, directory: Path) -> list[StoredObject]:
    objects = read_manifest(directory)
    verify_backup_files(directory, objects)
    require_empty(store)
    layout = LocalStorage(directory / OBJECTS_DIR)
    for item in objects:
        store.upload(item.key, layout.path_for(item.key), item.content_type)
    for item in objects:
        if store.sha256(item.key) != item.sha256:
            raise CopyError(f"{item.key} read back from {store.description} does not match its checksum")
    stored = set(store.list_keys())
    expected = {item.key for item in objects}
    if stored != expected:
        raise CopyError(f"{store.description} holds {len(stored)} objects after the restore, expected {len(expected)}")
    return objects


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("download-all", help="copy every object into DIR").add_argument("directory", type=Path)
    commands.add_parser("upload-all", help="copy DIR's objects into an empty store").add_argument(
        "directory", type=Path
    )
    commands.add_parser("verify", help="check DIR's files against its manifest").add_argument("directory", type=Path)
    commands.add_parser("check-empty", help="exit 1 if the store holds any object")
    args = parser.parse_args()

    try:
        if args.command == "verify":
            objects = read_manifest(args.directory)
            verify_backup_files(args.directory, objects)
            print(f"object_copy: {len(objects)} backed-up objects match their checksums")
            return 0
        store = open_store(load_settings_or_exit())
        if args.command == "download-all":
            copied = download_all(store, args.directory)
            print(f"object_copy: {len(copied)} objects copied from {store.description}")
        elif args.command == "upload-all":
            restored = upload_all(store, args.directory)
            print(f"object_copy: {len(restored)} objects restored into {store.description}, checksums verified")
        else:
            require_empty(store)
            print(f"object_copy: {store.description} is empty")
    except CopyError as error:
        print(f"object_copy: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
