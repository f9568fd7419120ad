"""The job queue's tables (pgqueuer, on PostgreSQL only), and what the operator commands record.

On every database: `images.thumbnail_recipe` (what a thumbnail was made with; null for those made
before, which `python -m app.admin regenerate` therefore redoes), `integrity_findings` (what
`app.admin scrub` found wrong with stored originals) and `maintenance_runs` (where a resumable
command stands).

pgqueuer's own DDL is rendered by pgqueuer 1.6 and run statement by statement (SQLAlchemy's asyncpg
driver runs one statement per call). A later pgqueuer release is brought up to date with its own
`pgq upgrade` (docs/operations.md). SQLite deployments use the in-process queue and need none of it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op
from app.models.base import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _pgqueuer_statements() -> list[str]:
    from pgqueuer.adapters.persistence import schema_ddl
    from pgqueuer.domain.settings import db_settings

    settings = db_settings()
    schema = schema_ddl.target(settings)
    return [
        *(schema_ddl.render_enum(entry, settings) for entry in schema.enums),
        *(schema_ddl.render_table(entry, settings) for entry in schema.tables),
        *(schema_ddl.render_index(entry, settings) for entry in schema.indexes),
        *(schema_ddl.render_function(entry, settings) for entry in schema.functions),
        *(schema_ddl.render_trigger(entry, settings) for entry in schema.triggers),
    ]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for statement in _pgqueuer_statements():
            op.execute(statement)
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("thumbnail_recipe", sa.String(64), nullable=True))
    op.create_table(
        "integrity_findings",
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("storage_key", sa.String(255), nullable=False),
        sa.Column("problem", sa.String(16), nullable=False),
        sa.Column("actual_checksum", sa.String(64), nullable=True),
        sa.Column("found_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("checksum", "storage_key", name="pk_integrity_findings"),
    )
    op.create_table(
        "maintenance_runs",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("cursor", sa.String(255), nullable=True),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_maintenance_runs"),
    )


def downgrade() -> None:
    op.drop_table("maintenance_runs")
    op.drop_table("integrity_findings")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("thumbnail_recipe")
    if op.get_bind().dialect.name == "postgresql":
        from pgqueuer.adapters.persistence import schema_ddl
        from pgqueuer.domain.settings import db_settings

        for statement in schema_ddl.render_uninstall(db_settings()).split(";\n"):
            if statement.strip():
                op.execute(statement)
