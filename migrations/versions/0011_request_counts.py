"""Request counts per instance, kind and second, shared by every worker process of a deployment (the QPS
plan is enforced across all of them); and the nonce table made UNLOGGED.

Both are written on every HTTP request: UNLOGGED tables skip the write-ahead log, so a request does not
wait for a disk flush. After a crash PostgreSQL empties them: counts restart (harmless) and nonces of the
last minutes are forgotten (a request captured just before a crash could be replayed until its date, at
most 15 minutes old, expires).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "CREATE UNLOGGED TABLE imagesearch.request_counts ("
        " instance_id integer NOT NULL, kind text NOT NULL, second bigint NOT NULL, count integer NOT NULL,"
        " PRIMARY KEY (instance_id, kind, second))"
    )
    op.execute("ALTER TABLE imagesearch.request_nonces SET UNLOGGED")


def downgrade() -> None:
    op.execute("ALTER TABLE imagesearch.request_nonces SET LOGGED")
    op.execute("DROP TABLE imagesearch.request_counts")
