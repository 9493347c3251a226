"""Each instance counts its pictures, in the same transactions that add and delete them.

Capacity is enforced against this count (counting a large partition per AddImage would read it all), and
Detail reads it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "instances",
        sa.Column("picture_count", sa.BigInteger, nullable=False, server_default="0"),
        schema="imagesearch",
    )
    op.execute(
        "UPDATE imagesearch.instances i"
        " SET picture_count = (SELECT count(*) FROM imagesearch.pictures p WHERE p.instance_id = i.id)"
    )


def downgrade() -> None:
    op.drop_column("instances", "picture_count", schema="imagesearch")
