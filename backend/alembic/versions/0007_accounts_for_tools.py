"""API keys, image visibility and expiry, account usage and token versions (issue 16, ADR 0017).

`users.used_bytes` and `used_images` are filled in from the images each account owns today; from
here on the transactions that add and remove images keep them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from app.models.base import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("public_id", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_keys_user_id_users", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("public_id", name="uq_api_keys_public_id"),
    )
    op.create_index("ix_api_keys_user_created", "api_keys", ["user_id", "created_at"])
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("token_version", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("used_bytes", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("used_images", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("deleted_at", UTCDateTime(), nullable=True))
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False, server_default="unlisted"))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.create_index("ix_images_expires_at", ["expires_at"])
    op.execute(
        "UPDATE users SET used_bytes = COALESCE((SELECT SUM(file_size) FROM images WHERE owner_id = users.id), 0),"
        " used_images = (SELECT COUNT(*) FROM images WHERE owner_id = users.id)"
    )
    with op.batch_alter_table("users") as batch:
        for column in ("token_version", "used_bytes", "used_images"):
            batch.alter_column(column, server_default=None)
    with op.batch_alter_table("images") as batch:
        batch.alter_column("visibility", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_expires_at")
        batch.drop_column("expires_at")
        batch.drop_column("visibility")
    with op.batch_alter_table("users") as batch:
        for column in ("deleted_at", "used_images", "used_bytes", "token_version"):
            batch.drop_column(column)
    op.drop_index("ix_api_keys_user_created", table_name="api_keys")
    op.drop_table("api_keys")
