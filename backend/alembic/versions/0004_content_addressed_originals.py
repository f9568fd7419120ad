"""Originals shared by content: storage keys no longer unique, metadata stripping recorded per image.

Images uploaded before keep their objects and keys (`<id>.<ext>`, unstripped, `metadata_stripped`
false); `python -m app.admin strip-metadata` rewrites them into the content-addressed layout
(docs/operations.md). No object moves here.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_constraint("uq_images_storage_key", type_="unique")
        # Existing rows hold originals as uploaded; new uploads set the column themselves.
        batch.add_column(sa.Column("metadata_stripped", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.create_index("ix_images_storage_key_thumbnail", ["storage_key", "thumbnail_status"], unique=False)
        batch.create_index("ix_images_thumbnail_key", ["thumbnail_key"], unique=False)
    with op.batch_alter_table("images") as batch:
        batch.alter_column("metadata_stripped", server_default=None)


def downgrade() -> None:
    # Releases before 0004 find an original at `<id>.<ext>` and delete it with its image: an image stored
    # under a content key, or sharing an object, would be lost or break its siblings there.
    connection = op.get_bind()
    images = sa.table("images", sa.column("id", sa.Uuid()), sa.column("storage_key"), sa.column("thumbnail_key"))
    content_addressed = connection.execute(
        sa.select(sa.func.count()).select_from(images).where(images.c.storage_key.like("originals/%"))
    ).scalar_one()
    rows = connection.execute(sa.select(images.c.id, images.c.thumbnail_key).where(images.c.thumbnail_key.is_not(None)))
    borrowed_thumbnails = sum(1 for image_id, key in rows if not key.startswith(f"thumbnails/{image_id}."))
    if content_addressed or borrowed_thumbnails:
        raise RuntimeError(
            f"{content_addressed + borrowed_thumbnails} images use content-addressed originals or share another "
            "image's thumbnail, which releases before revision 0004 cannot serve or would delete with the other "
            "image. Restore the backup taken before the upgrade instead (docs/operations.md)."
        )
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_thumbnail_key")
        batch.drop_index("ix_images_storage_key_thumbnail")
        batch.drop_column("metadata_stripped")
        batch.create_unique_constraint("uq_images_storage_key", ["storage_key"])
