"""Originals stored once per content, shared by every image with that content (ADR 0014).

An original is stored under a key made from the SHA-256 of its (stripped) bytes, so identical uploads
share one object; thumbnails are shared the same way once ready. Rows name the objects they use
(`images.storage_key`, `images.thumbnail_key`), and two rules keep every row's bytes present and no
object orphaned, with any number of processes on PostgreSQL and on SQLite:

- a row that names a key is added only under the content's lock, and only when the object is known to
  be there: another committed row names it, or this transaction stored it;
- an object is deleted only under the content's lock, when no committed row names it.

The lock is the content's: a transaction-scoped advisory lock on PostgreSQL; on SQLite, the database's
one write lock, taken by a write that starts the transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sqlalchemy import Select, bindparam, delete, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.database import transaction
from app.media.formats import EXTENSIONS
from app.models import Image, Variant
from app.services.storage import StorageBackend

logger = logging.getLogger(__name__)

# The first key of PostgreSQL's two-key advisory locks: a space of its own, apart from the migrations'.
CONTENT_LOCK_SPACE = 0x43484E54  # "CHNT"


def original_key(checksum: str, content_type: str) -> str:
    """Where the original with this SHA-256 is stored (a two-character folder keeps folders small on disk)."""
    return f"originals/{checksum[:2]}/{checksum}{EXTENSIONS[content_type]}"


async def lock_content(connection: AsyncConnection, checksum: str) -> None:
    """Hold the content's lock until this transaction ends; must be the transaction's first statement."""
    if connection.dialect.name == "postgresql":
        # 32 bits of the hash are plenty: two contents that share them only wait for each other.
        lock_id = int(checksum[:8], 16) - (1 << 31)
        await connection.execute(_PG_LOCK, {"space": CONTENT_LOCK_SPACE, "lock_id": lock_id})
    else:
        # SQLite has one writer at a time: a write that changes nothing takes that lock (WAL mode)
        # before any read of this transaction, so what it reads next is not stale.
        await connection.execute(_SQLITE_LOCK)


def rows_naming(keys: Iterable[str]) -> Select[str, str | None]:
    """The storage and thumbnail keys of the rows that name any of `keys`."""
    wanted = sorted(set(keys))
    return select(Image.storage_key, Image.thumbnail_key).where(
        or_(Image.storage_key.in_(wanted), Image.thumbnail_key.in_(wanted))
    )


async def collect_garbage(
    sessionmaker: async_sessionmaker[AsyncSession], storage: StorageBackend, checksum: str, keys: Iterable[str | None]
) -> list[str]:
    """Delete those of `keys` that no row names any more, and every variant once no image has the
    content; returns the keys deleted.

    Called after a delete commits, after an upload that stored its original fails, and by jobs whose
    work lost its row. A storage failure propagates (the caller logs it); what it left is an orphan.
    """
    candidates = sorted({key for key in keys if key})
    if not candidates:
        return []
    async with transaction(sessionmaker) as connection:
        await lock_content(connection, checksum)
        named: set[str | None] = set()
        for row in await connection.execute(rows_naming(candidates)):
            named.update(row)
        garbage = [key for key in candidates if key not in named]
        if (await connection.execute(_ANY_IMAGE, {"checksum": checksum})).first() is None:
            # The content's last image is gone: its variants go too (ADR 0015). A variant being
            # rendered loses its row here, and its renderer removes what it stores (`variants`).
            removed = await connection.execute(
                delete(Variant).where(Variant.source_checksum == checksum).returning(Variant.storage_key)
            )
            garbage += [key for (key,) in removed if key]
        for key in garbage:
            await storage.delete(key)
    return garbage


_ANY_IMAGE = select(Image.id).where(Image.checksum == bindparam("checksum")).limit(1)
_PG_LOCK = text("SELECT pg_advisory_xact_lock(:space, :lock_id)")
_SQLITE_LOCK = update(Image).where(text("0 = 1")).values(id=Image.id)
