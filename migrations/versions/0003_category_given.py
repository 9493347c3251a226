"""Remember whether a picture's category was given by the user or predicted.

Only given categories vote when predicting the category of a new picture: counting predictions too
would let early mistakes reinforce themselves.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "pictures",
        sa.Column("category_given", sa.Boolean, nullable=False, server_default=sa.false()),
        schema="imagesearch",
    )


def downgrade() -> None:
    op.drop_column("pictures", "category_given", schema="imagesearch")
