"""The job queue's tables (pgqueuer, on PostgreSQL only), and what the operator commands record.

pgqueuer's own DDL is rendered by pgqueuer 1.6 and run statement by statement (SQLAlchemy's asyncpg
driver runs one statement per call). A later pgqueuer release is brought up to date with its own
`pgq upgrade` (docs/operations.md). SQLite deployments use the in-process queue and need none of it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

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


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        from pgqueuer.adapters.persistence import schema_ddl
        from pgqueuer.domain.settings import db_settings

        for statement in schema_ddl.render_uninstall(db_settings()).split(";\n"):
            if statement.strip():
                op.execute(statement)
