"""Trademark encoder: silhouette vectors and SIFT keypoints stored with each picture.

``silhouette`` (halfvec) holds the mark's ink-on-background silhouette encoded; ``keypoints`` the packed
SIFT features (descriptors.pack_local) used to re-rank. Both are NULL for encoders that give neither.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import HALFVEC

from imagesearch_pg.store.schema import run_sql_file

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("pictures", sa.Column("silhouette", HALFVEC()), schema="imagesearch")
    op.add_column("pictures", sa.Column("keypoints", sa.LargeBinary), schema="imagesearch")
    # In line unless a row would outgrow its page (the default, EXTERNAL, would move every one to TOAST).
    op.execute("ALTER TABLE imagesearch.pictures ALTER COLUMN silhouette SET STORAGE MAIN")
    run_sql_file(op.get_bind(), "0006_silhouettes.sql")
    op.execute(
        "INSERT INTO imagesearch.encoders (name, dim, spec) VALUES ('efficientnet-lite0-trademark', 1280, NULL)"
    )


def downgrade() -> None:
    op.execute("DELETE FROM imagesearch.encoders WHERE name = 'efficientnet-lite0-trademark'")
    op.execute("DROP FUNCTION imagesearch.create_silhouette_index(integer)")
    op.execute("DROP FUNCTION imagesearch.drop_silhouette_index(integer)")
    op.drop_column("pictures", "keypoints", schema="imagesearch")
    op.drop_column("pictures", "silhouette", schema="imagesearch")  # and the silhouette indexes with it
