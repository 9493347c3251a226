"""The built-in shape-view encoder (grey, polarity-normalised, GeM Lite0), default for trademark instances.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO imagesearch.encoders (name, dim, spec) VALUES ('efficientnet-lite0-gem-shape', 1280, NULL)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM imagesearch.encoders WHERE name = 'efficientnet-lite0-gem-shape'")
