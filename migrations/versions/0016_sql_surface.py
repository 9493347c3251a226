"""The SQL surface: the filter language compiled in the database and the search functions (docs/sql.md).
They replace sql/0001's search_by_vector and search_by_name, which ignored filters and every option; the
downgrade brings those back. Every object is in schema imagesearch.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01
"""

from alembic import op

from imagesearch_pg.store.schema import run_sql_file, run_sql_functions

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

FILES = ("0016_filter.sql", "0016_search.sql")
# Dropped in this order by the downgrade (the functions before the types and views they use).
FUNCTIONS = (
    "search_by_picture(text, text, text, integer, integer, text, integer, boolean, double precision)",
    "search_by_vector(text, vector, integer, integer, text, integer, boolean, double precision)",
    "search_by_product(text, text, integer, integer, text, integer, boolean, double precision)",
    "ranked(imagesearch.search_plan, text, vector, halfvec, double precision, vector[])",
    "nearest_any(imagesearch.search_plan, vector[], integer)",
    "nearest_fused(imagesearch.search_plan, vector, halfvec, double precision, integer)",
    "nearest(imagesearch.search_plan, vector, integer)",
    "scan(imagesearch.search_plan, vector, integer, boolean)",
    "plan_search(imagesearch.instances, text, integer, text, integer, integer, double precision, boolean)",
    "checked_category(text, integer)",
    "instance_named(text)",
    "check_window(integer, integer, double precision)",
    "check_text(text, text, integer, boolean)",
    "key_digest(text, text)",
    "silhouette_margin(text)",
    "compile_filter(text)",
    "filter_fail(integer, text)",
    "filter_shown(text, boolean)",
    "py_repr(text)",
    "raise_error(text, text)",
)


def upgrade() -> None:
    op.execute("DROP FUNCTION imagesearch.search_by_name(text, text, text, integer)")
    op.execute("DROP FUNCTION imagesearch.search_by_vector(text, vector, integer)")
    for name in FILES:
        run_sql_file(op.get_bind(), name)


def downgrade() -> None:
    for signature in FUNCTIONS:
        op.execute(f"DROP FUNCTION imagesearch.{signature}")
    op.execute("DROP VIEW imagesearch.category_list")
    op.execute("DROP TYPE imagesearch.search_plan")
    op.execute("DROP TYPE imagesearch.search_result")
    run_sql_functions(op.get_bind(), "0001_functions.sql", ("search_by_vector", "search_by_name"))
