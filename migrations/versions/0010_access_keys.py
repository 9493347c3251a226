"""AccessKey pairs for signed HTTP requests, and the nonces already seen (replay protection).

A secret must be readable by the server to check an HMAC, so it is stored encrypted (Fernet, with the
deployment's secret key), never in clear. ``instances`` NULL means every instance.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "access_keys",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("secret_encrypted", sa.LargeBinary, nullable=False),
        sa.Column("instances", pg.ARRAY(sa.Text)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        schema="imagesearch",
    )
    op.create_table(
        "request_nonces",
        sa.Column("nonce", sa.Text, primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema="imagesearch",
    )
    op.create_index("request_nonces_seen_at_idx", "request_nonces", ["seen_at"], schema="imagesearch")


def downgrade() -> None:
    op.drop_table("request_nonces", schema="imagesearch")
    op.drop_table("access_keys", schema="imagesearch")
