"""Users, image ownership and anonymous delete tokens.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from app.models.base import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("hashed_password", sa.String(length=255), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("owner_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("delete_token_hash", sa.String(length=64), nullable=True))
        batch.create_foreign_key(op.f("fk_images_owner_id_users"), "users", ["owner_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_images_owner_created", ["owner_id", "created_at", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_index("ix_images_owner_created")
        batch.drop_constraint(op.f("fk_images_owner_id_users"), type_="foreignkey")
        batch.drop_column("delete_token_hash")
        batch.drop_column("owner_id")
    op.drop_table("users")
