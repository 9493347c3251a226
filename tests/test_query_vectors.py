"""Query vectors bound in pgvector's binary format reach the server as the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imagesearch_pg.store.query_vectors import halfvec_parameter

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)
vectors = st.integers(1, 2000).flatmap(lambda n: arrays(np.float32, n, elements=finite))


def _server_text(engine, expression) -> list[float]:
    with engine.connect() as conn:
        text = conn.execute(sa.select(sa.cast(expression, sa.Text))).scalar_one()
    return [float(x) for x in text.strip("[]").split(",")]


@settings(max_examples=40, deadline=None)
@given(vectors)
def test_halfvec_parameter_arrives_as_float16(engine, values):
    halves = values.astype(np.float16)
    if not np.isfinite(halves).all():  # past float16's range the server refuses it, as it should
        return
    received = _server_text(engine, halfvec_parameter("h", values, len(values)))
    np.testing.assert_array_equal(np.asarray(received, np.float16), halves)


def test_halfvec_parameter_of_the_wrong_dimension_is_refused(engine):
    with pytest.raises(sa.exc.DataError, match="expected 4 dimensions, not 3"):
        _server_text(engine, halfvec_parameter("v", np.ones(3, np.float32), 4))


def test_statements_render_with_their_values_for_explain(engine):
    statement = sa.select(halfvec_parameter("v", np.array([0.5, -2.0], np.float32), 2))
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    assert "'[0.5,-2.0]'" in str(compiled)
    with engine.connect() as conn:  # the rendered statement runs, and the server reads the same numbers
        assert conn.exec_driver_sql(f"SELECT CAST(({compiled}) AS text)").scalar_one() == "[0.5,-2]"
