"""Vectors bound as parameters in pgvector's binary format: query vectors, and the rows a write sends.

pgvector's SQLAlchemy types send vectors as text ("[0.0123,...]"): formatting a 1280-d vector is a few
milliseconds of Python and 17 kB on the wire, and a trademark search sends seven. These types send the
binary form instead (2.5 kB as halfvec, one numpy conversion). The parameter goes out with no type OID; the CAST
that every use puts around it tells the server its type, whose receive function then reads it.
"""

from __future__ import annotations

import struct

import numpy as np
import psycopg
import sqlalchemy as sa
from pgvector import HalfVector
from pgvector.psycopg.halfvec import HalfVectorBinaryDumper
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo
from sqlalchemy.types import UserDefinedType


class _BinaryParameter:
    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data


class _BinaryParameterDumper(Dumper):
    format = Format.BINARY
    oid = 0  # unknown: the server takes the type from the surrounding CAST

    def dump(self, obj: _BinaryParameter) -> bytes:
        return obj.data


psycopg.adapters.register_dumper(_BinaryParameter, _BinaryParameterDumper)


# pgvector's schema in the service's database, as an identifier, learnt when a connection opens
# (store/database.py). The service's connections find names in pg_catalog alone, so its SQL names pgvector's
# types and operators with their schema: nothing another role makes in public can stand in for them.
_vector_schema = "public"


def use_vector_schema(quoted: str) -> None:
    global _vector_schema
    _vector_schema = quoted


def vector_type(name: str) -> str:
    """pgvector's type ``name`` (halfvec, vector) named with its schema, for SQL text."""
    return f"{_vector_schema}.{name}"


def cosine_distance(left, right) -> sa.ColumnElement:
    """``left <=> right``: pgvector's cosine distance, its operator named with its schema."""
    return left.op(f"OPERATOR({_vector_schema}.<=>)", return_type=sa.Float())(right)


class _BinaryVectorType(UserDefinedType):
    sql_name = ""
    element = ""  # numpy dtype of one element on the wire (big-endian)

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def get_col_spec(self, **kw) -> str:
        return f"{vector_type(self.sql_name)}({self.dim})"

    def bind_processor(self, dialect):
        element = self.element

        def process(value):
            if value is None:
                return None
            array = np.asarray(value, dtype=element).reshape(-1)
            # pgvector's recv format: int16 dimensions, int16 unused, then the elements
            return _BinaryParameter(struct.pack(">HH", len(array), 0) + array.tobytes())

        return process

    def literal_processor(self, dialect):
        # For statements rendered with their values (EXPLAIN in tests and tools): pgvector's text form.
        def process(value):
            return "'[" + ",".join(repr(float(x)) for x in np.asarray(value).reshape(-1)) + "]'"

        return process


class Halfvec(_BinaryVectorType):
    """pgvector's halfvec(dim): a cast's type, and a parameter's, sent in binary (float16 on the wire)."""

    cache_ok = True
    sql_name, element = "halfvec", ">f2"


def halfvec_parameter(name: str, value: np.ndarray, dim: int) -> sa.Cast:
    """``CAST(:name AS halfvec(dim))`` bound to ``value`` in binary."""
    return sa.cast(sa.bindparam(name, value, Halfvec(dim)), Halfvec(dim))


def send_halfvec(raw: psycopg.Connection) -> None:
    """Let this connection send pgvector's HalfVector, alone or in lists (halfvec[]) and COPY, in binary.
    An array names its elements' type OID, which is the database's own: looked up once per connection.
    Only the dumper is added; what the connection reads stays as it was."""
    if raw.adapters.types.get("halfvec") is not None:
        return
    info = TypeInfo.fetch(raw, vector_type("halfvec"))
    info.register(raw)
    raw.adapters.register_dumper(HalfVector, type("HalfvecDumper", (HalfVectorBinaryDumper,), {"oid": info.oid}))
