"""Near-duplicate pairs through the SQL surface's own function (sql/0016_duplicates.sql), so that the CLI
and SQL give one answer."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa

from imagesearch_pg.errors import from_code

_PAIRS = sa.text("SELECT * FROM imagesearch.duplicate_pairs(:instance, :min_score, :neighbours)")


def pairs(conn: sa.Connection, instance_name: str, min_score: float, neighbours: int) -> list[sa.Row]:
    """(product_id_a, pic_name_a, product_id_b, pic_name_b, score) rows, best first."""
    try:
        return list(conn.execute(_PAIRS, {"instance": instance_name, "min_score": min_score, "neighbours": neighbours}))
    except sa.exc.DBAPIError as exc:
        raise surface_error(exc) from None


def surface_error(exc: sa.exc.DBAPIError) -> Exception:
    """A refusal raised by the SQL surface (its DETAIL is the Code) as the service's error; anything else
    as it was."""
    orig = exc.orig
    code = orig.diag.message_detail if isinstance(orig, psycopg.Error) else None
    if isinstance(orig, (psycopg.errors.InvalidParameterValue, psycopg.errors.NoDataFound)) and code:
        return from_code(code, orig.diag.message_primary)
    return exc
