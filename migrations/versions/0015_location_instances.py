"""Storage locations name the instances that may import from them (NULL: every instance), so that a key
limited to one instance cannot read another tenant's folders.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("storage_locations", sa.Column("instances", pg.ARRAY(sa.Text)), schema="imagesearch")


def downgrade() -> None:
    op.drop_column("storage_locations", "instances", schema="imagesearch")
