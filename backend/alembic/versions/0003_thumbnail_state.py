"""Thumbnail job state on each image.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from app.models.base import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        # Existing images get "pending", so the sweeper makes their thumbnails after the upgrade.
        batch.add_column(sa.Column("thumbnail_status", sa.String(16), nullable=False, server_default="pending"))
        batch.add_column(sa.Column("thumbnail_key", sa.String(255), nullable=True))
        batch.add_column(sa.Column("thumbnail_content_type", sa.String(64), nullable=True))
        batch.add_column(sa.Column("thumbnail_size", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("thumbnail_checksum", sa.String(64), nullable=True))
        batch.add_column(sa.Column("thumbnail_attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("thumbnail_error", sa.String(255), nullable=True))
        batch.add_column(sa.Column("thumbnail_lease_until", UTCDateTime(), nullable=True))
        batch.create_index("ix_images_thumbnail_pending", ["thumbnail_status", "thumbnail_lease_until"], unique=False)
    with op.batch_alter_table("images") as batch:
        # The defaults were only for existing rows; the app sets both on insert.
        batch.alter_column("thumbnail_status", server_default=None)
        batch.alter_column("thumbnail_attempts", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_thumbnail_pending")
        for column in (
            "thumbnail_lease_until",
            "thumbnail_error",
            "thumbnail_attempts",
            "thumbnail_checksum",
            "thumbnail_size",
            "thumbnail_content_type",
            "thumbnail_key",
            "thumbnail_status",
        ):
            batch.drop_column(column)
