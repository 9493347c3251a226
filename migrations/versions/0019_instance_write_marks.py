"""Each instance remembers the last transaction that wrote its pictures (instances.last_write_xid), so that
a search may go to a streaming replica only once that replica has replayed it: a client then reads its own
writes whichever server process it wrote through (store/replicas.py, docs/scaling.md).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The transaction that makes an instance (and its partition) is its first write.
    op.execute("ALTER TABLE imagesearch.instances ADD COLUMN last_write_xid xid8 NOT NULL DEFAULT pg_current_xact_id()")


def downgrade() -> None:
    op.drop_column("instances", "last_write_xid", schema="imagesearch")
