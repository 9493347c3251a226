"""The built-in GeM-pooled EfficientNet-Lite0 encoder, the new default for every service type.

Existing instances keep the encoder they were made with: their vectors stay comparable.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("INSERT INTO imagesearch.encoders (name, dim, spec) VALUES ('efficientnet-lite0-gem', 1280, NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM imagesearch.encoders WHERE name = 'efficientnet-lite0-gem'")
