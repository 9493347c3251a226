"""The built-in texture encoder (GeM Lite0 of the picture and of it turned a quarter), default for fabric.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "INSERT INTO imagesearch.encoders (name, dim, spec) VALUES ('efficientnet-lite0-gem-texture', 1280, NULL)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM imagesearch.encoders WHERE name = 'efficientnet-lite0-gem-texture'")
