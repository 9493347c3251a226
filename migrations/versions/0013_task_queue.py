"""Background tasks as a queue in PostgreSQL: leases, attempts, the protocol's states, a wake-up NOTIFY.

Workers claim a task with SELECT ... FOR UPDATE SKIP LOCKED and hold it by a lease (owner and expiry)
that they renew while they work; a task whose lease expired (its worker was killed, its machine is gone)
is claimed again by another, which resumes from its checkpoint. Only the earliest unfinished task of an
instance can be claimed, so an instance's tasks run one at a time in submission order while different
instances' run in parallel. Inserting a task notifies channel ``imagesearch_tasks`` so that an idle
worker starts it at once rather than at its next poll.

States are the protocol's: queued, running, succeeded, partially_failed, failed (0001 had pending, running,
done, failed; nothing used the table).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STATES = "('queued', 'running', 'succeeded', 'partially_failed', 'failed')"


def upgrade() -> None:
    op.execute("ALTER TABLE imagesearch.tasks DROP CONSTRAINT tasks_state")
    op.execute("UPDATE imagesearch.tasks SET state = CASE state WHEN 'pending' THEN 'queued' "
               "WHEN 'done' THEN 'succeeded' ELSE state END")
    op.execute("ALTER TABLE imagesearch.tasks ALTER COLUMN state SET DEFAULT 'queued'")
    op.execute(f"ALTER TABLE imagesearch.tasks ADD CONSTRAINT tasks_state CHECK (state IN {STATES})")
    op.add_column("tasks", sa.Column("lease_owner", sa.Text), schema="imagesearch")
    op.add_column("tasks", sa.Column("lease_expires_at", sa.DateTime(timezone=True)), schema="imagesearch")
    op.add_column("tasks", sa.Column("attempts", sa.Integer, nullable=False, server_default="0"), schema="imagesearch")
    op.add_column("tasks", sa.Column("started_at", sa.DateTime(timezone=True)), schema="imagesearch")
    op.add_column("tasks", sa.Column("finished_at", sa.DateTime(timezone=True)), schema="imagesearch")
    op.drop_index("tasks_claim", table_name="tasks", schema="imagesearch")
    # The claim reads the unfinished tasks only, by instance and submission order.
    op.execute("CREATE INDEX tasks_unfinished ON imagesearch.tasks (instance_id, id) "
               "WHERE state IN ('queued', 'running')")
    op.execute("""
        CREATE FUNCTION imagesearch.notify_task_submitted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('imagesearch_tasks', NEW.id::text);
            RETURN NEW;
        END $$""")
    op.execute("CREATE TRIGGER tasks_submitted AFTER INSERT ON imagesearch.tasks "
               "FOR EACH ROW EXECUTE FUNCTION imagesearch.notify_task_submitted()")


def downgrade() -> None:
    op.execute("DROP TRIGGER tasks_submitted ON imagesearch.tasks")
    op.execute("DROP FUNCTION imagesearch.notify_task_submitted()")
    op.execute("DROP INDEX imagesearch.tasks_unfinished")
    op.create_index("tasks_claim", "tasks", ["state", "created_at"], schema="imagesearch")
    for column in ("finished_at", "started_at", "attempts", "lease_expires_at", "lease_owner"):
        op.drop_column("tasks", column, schema="imagesearch")
    op.execute("ALTER TABLE imagesearch.tasks DROP CONSTRAINT tasks_state")
    op.execute("UPDATE imagesearch.tasks SET state = CASE state WHEN 'queued' THEN 'pending' "
               "WHEN 'succeeded' THEN 'done' WHEN 'partially_failed' THEN 'done' ELSE state END")
    op.execute("ALTER TABLE imagesearch.tasks ALTER COLUMN state SET DEFAULT 'pending'")
    op.execute("ALTER TABLE imagesearch.tasks ADD CONSTRAINT tasks_state "
               "CHECK (state IN ('pending', 'running', 'done', 'failed'))")
