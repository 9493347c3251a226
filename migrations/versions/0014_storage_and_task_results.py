"""Storage locations, batch tasks' line errors, callback delivery, and a status view for DBAs.

- ``storage_locations``: the folders (local or S3-compatible) the operator exposes to IncreaseInstance and
  where exports are written. Only where they are: credentials come from the environment or a config file
  at run time, never from the database.
- ``task_errors``: one row per failed line of a batch task, written in the transaction that applied the
  lines around it, so a crash never loses or doubles one.
- ``tasks.callback_*``: a finished task's callback is due until it is delivered or given up; workers claim
  due callbacks as they claim tasks (SKIP LOCKED), so retries survive a restart. Every attempt is kept.
- ``task_status``: what a DBA asks of the queue, in plain columns.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql as pg

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_locations",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("url", sa.Text, nullable=False),  # file:///abs/folder or s3://bucket[/prefix]
        sa.Column("endpoint", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("profile", sa.Text),  # a profile of the AWS config files, never a key
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$'", name="storage_locations_name"),
        schema="imagesearch",
    )
    op.create_table(
        "task_errors",
        sa.Column("task_id", sa.BigInteger, sa.ForeignKey("imagesearch.tasks.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        schema="imagesearch",
    )
    op.add_column("tasks", sa.Column("callback_state", sa.Text), schema="imagesearch")
    op.add_column("tasks", sa.Column("callback_due_at", sa.DateTime(timezone=True)), schema="imagesearch")
    op.add_column("tasks", sa.Column("callback_attempts", pg.JSONB, nullable=False,
                                     server_default=sa.text("'[]'::jsonb")), schema="imagesearch")
    op.execute("ALTER TABLE imagesearch.tasks ADD CONSTRAINT tasks_callback_state "
               "CHECK (callback_state IN ('due', 'delivered', 'gave_up'))")
    op.execute("CREATE INDEX tasks_callbacks_due ON imagesearch.tasks (callback_due_at) "
               "WHERE callback_state = 'due'")
    op.execute("""
        CREATE VIEW imagesearch.task_status AS
        SELECT t.id, i.name AS instance, t.kind, t.state, t.attempts,
               (t.progress ->> 'done')::bigint AS lines_done, (t.progress ->> 'total')::bigint AS lines_total,
               (SELECT count(*) FROM imagesearch.task_errors e WHERE e.task_id = t.id) AS lines_failed,
               t.lease_owner, t.lease_expires_at, t.error_code, t.error_message, t.callback_state,
               t.created_at, t.started_at, t.finished_at
        FROM imagesearch.tasks t JOIN imagesearch.instances i ON i.id = t.instance_id""")


def downgrade() -> None:
    op.execute("DROP VIEW imagesearch.task_status")
    op.execute("DROP INDEX imagesearch.tasks_callbacks_due")
    op.execute("ALTER TABLE imagesearch.tasks DROP CONSTRAINT tasks_callback_state")
    for column in ("callback_attempts", "callback_due_at", "callback_state"):
        op.drop_column("tasks", column, schema="imagesearch")
    op.drop_table("task_errors", schema="imagesearch")
    op.drop_table("storage_locations", schema="imagesearch")
