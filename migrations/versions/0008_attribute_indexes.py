"""B-tree indexes on the attributes filters use, declared on the partitioned table so that every
instance's partition (existing and future) gets its own.

A selective filter then reads only its matching rows (bitmap index scans), which the search scores
exactly; the per-query plan (store/pictures.py) relies on the planner's row estimate over them.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

COLUMNS = (
    "category_id", "int_attr", "int_attr2", "int_attr3", "int_attr4", "str_attr", "str_attr2", "str_attr3", "str_attr4",
)


def upgrade() -> None:
    for column in COLUMNS:
        op.execute(f"CREATE INDEX pictures_{column}_idx ON imagesearch.pictures ({column})")


def downgrade() -> None:
    for column in COLUMNS:
        op.execute(f"DROP INDEX imagesearch.pictures_{column}_idx")
