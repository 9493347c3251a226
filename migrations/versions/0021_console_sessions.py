"""Console sessions a server can end: each console user has a session generation, which every session
cookie carries and every console request compares with the database. Logging out, a password change and
deleting the user draw a new one, so that every cookie issued before no longer opens anything.

Generations come from one sequence for all users, so that a user deleted and made again under the same
name never matches a cookie of the old account.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE SEQUENCE imagesearch.console_session_generations AS bigint")
    # Existing rows draw theirs here; cookies made before carry none, so everyone logs in again once.
    op.add_column("console_users", sa.Column(
        "session_generation", sa.BigInteger, nullable=False,
        server_default=sa.text("nextval('imagesearch.console_session_generations')")), schema="imagesearch")
    op.execute("ALTER SEQUENCE imagesearch.console_session_generations "
               "OWNED BY imagesearch.console_users.session_generation")


def downgrade() -> None:
    op.drop_column("console_users", "session_generation", schema="imagesearch")  # and its sequence (OWNED BY)
