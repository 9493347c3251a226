"""Encoders: the built-in one and users' ONNX models described by a spec; instances reference them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "encoders",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("dim", sa.Integer, nullable=False),
        # NULL for the built-in encoders, which the code knows; a user's EncoderSpec as JSON otherwise.
        sa.Column("spec", pg.JSONB),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("dim BETWEEN 1 AND 2000", name="encoders_dim"),
        schema="imagesearch",
    )
    op.execute("INSERT INTO imagesearch.encoders (name, dim, spec) VALUES ('efficientnet-lite0', 1280, NULL)")
    op.create_foreign_key(
        "instances_encoder_fkey", "instances", "encoders", ["encoder"], ["name"],
        source_schema="imagesearch", referent_schema="imagesearch",
    )


def downgrade() -> None:
    op.drop_constraint("instances_encoder_fkey", "instances", schema="imagesearch")
    op.drop_table("encoders", schema="imagesearch")
