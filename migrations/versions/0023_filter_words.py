"""The filter compiler lexes alike in every database: word characters were the database locale's
[:alnum:], so a database made with another locale (PostgreSQL's builtin C.UTF-8, or libc's C) refused
some filters with other messages than the service's Python parser; and keywords are lower-cased by ASCII
rules whatever the locale (sql/0023_filter_words.sql).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-08
"""

from alembic import op

from imagesearch_pg.store.schema import run_sql_functions

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_functions(op.get_bind(), "0023_filter_words.sql", ("compile_filter",))


def downgrade() -> None:
    run_sql_functions(op.get_bind(), "0016_filter.sql", ("compile_filter",))
