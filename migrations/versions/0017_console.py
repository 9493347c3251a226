"""The web console: its accounts (argon2id password hashes), failed logins counted per user name and per
client for throttling, the key that signs console sessions (one row, made on first use, so that sessions
survive restarts and every server process shares it), and a thumbnail of each stored picture.

Thumbnails are JPEGs of at most 160 px (vision/thumbnails.py), stored EXTERNAL: out of line and not
compressed again, so that the rows the searches scan keep their size. Pictures stored before have none.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pictures", sa.Column("thumbnail", sa.LargeBinary), schema="imagesearch")
    op.execute("ALTER TABLE imagesearch.pictures ALTER COLUMN thumbnail SET STORAGE EXTERNAL")
    op.create_table(
        "console_users",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_login_at", sa.DateTime(timezone=True)),
        schema="imagesearch",
    )
    op.create_table(
        "console_login_failures",
        sa.Column("key", sa.Text, primary_key=True),  # 'user:<name>' or 'client:<address>'
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        schema="imagesearch",
    )
    op.create_table(
        "console_secret",
        sa.Column("id", sa.Boolean, primary_key=True, server_default=sa.true()),
        sa.Column("secret", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("id", name="console_secret_one_row"),
        schema="imagesearch",
    )


def downgrade() -> None:
    op.drop_table("console_secret", schema="imagesearch")
    op.drop_table("console_login_failures", schema="imagesearch")
    op.drop_table("console_users", schema="imagesearch")
    op.drop_column("pictures", "thumbnail", schema="imagesearch")
