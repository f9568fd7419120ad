"""Variants of each content, and a ThumbHash placeholder per image.

Existing images keep a null placeholder (clients show none; a backfill is in TODO.md), and new uploads
of their content take it over from them as they take over the thumbnail. Variants are made on request (ADR 0015).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from app.models.base import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "variants",
        sa.Column("source_checksum", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("claim_token", sa.String(32), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("storage_key", sa.String(255), nullable=True),
        sa.Column("content_type", sa.String(64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.String(64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source_checksum", "name", name="pk_variants"),
    )
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("placeholder", sa.String(64), nullable=True))
        batch.create_index("ix_images_checksum", ["checksum"], unique=False)


def downgrade() -> None:
    # Rendered variants stay in storage under variants/: releases before 0005 neither serve nor delete them.
    # Remove that folder (or prefix) after the downgrade to reclaim the space (docs/operations.md).
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_checksum")
        batch.drop_column("placeholder")
    op.drop_table("variants")
