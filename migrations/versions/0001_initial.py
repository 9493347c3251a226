"""Instances, pictures (one LIST partition per instance), background tasks, and the SQL surface.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

from imagesearch_pg.store.schema import run_sql_file

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SERVICE_TYPES = ("product", "generic", "fabric", "trademark")


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public")  # where a DBA has not made it already
    op.execute("CREATE SCHEMA IF NOT EXISTS imagesearch")

    op.create_table(
        "instances",
        sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("service_type", sa.Text, nullable=False),
        sa.Column("capacity", sa.BigInteger, nullable=False),
        sa.Column("qps", sa.Integer, nullable=False),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("tags", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        sa.Column("encoder", sa.Text, nullable=False),
        sa.Column("embedding_dim", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(f"service_type IN {SERVICE_TYPES!r}", name="instances_service_type"),
        sa.CheckConstraint("status IN ('active', 'clearing')", name="instances_status"),
        sa.CheckConstraint("capacity > 0 AND qps > 0", name="instances_positive_plan"),
        schema="imagesearch",
    )

    # Partitioned by instance: see sql/0001_functions.sql for why and how partitions are made.
    op.execute(
        """
        CREATE TABLE imagesearch.pictures (
            instance_id    integer NOT NULL REFERENCES imagesearch.instances (id) ON DELETE CASCADE,
            product_id     text NOT NULL,
            pic_name       text NOT NULL,
            category_id    integer NOT NULL,
            custom_content text,
            int_attr       integer,
            int_attr2      integer,
            int_attr3      integer,
            int_attr4      integer,
            str_attr       text,
            str_attr2      text,
            str_attr3      text,
            str_attr4      text,
            region         text,
            embedding      vector NOT NULL,
            created_at     timestamptz NOT NULL DEFAULT now(),
            updated_at     timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (instance_id, product_id, pic_name)
        ) PARTITION BY LIST (instance_id)
        """
    )

    op.create_table(
        "tasks",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "instance_id",
            sa.Integer,
            sa.ForeignKey("imagesearch.instances.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("params", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("progress", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("checkpoint", pg.JSONB),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("result_url", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("kind IN ('import', 'export')", name="tasks_kind"),
        sa.CheckConstraint("state IN ('pending', 'running', 'done', 'failed')", name="tasks_state"),
        schema="imagesearch",
    )
    op.create_index("tasks_claim", "tasks", ["state", "created_at"], schema="imagesearch")

    run_sql_file(op.get_bind(), "0001_functions.sql")


def downgrade() -> None:
    # Dropping the schema drops every instance's partition with it; the vector extension may serve others.
    # The version table lived in it (migrations/env.py): alembic still removes this revision's row from it,
    # and env.py drops the schema once that is done.
    op.execute("DROP SCHEMA imagesearch CASCADE")
    op.execute("CREATE SCHEMA imagesearch")
    op.execute("CREATE TABLE imagesearch.alembic_version (version_num varchar(32) PRIMARY KEY)")
    op.execute("INSERT INTO imagesearch.alembic_version VALUES ('0001')")
