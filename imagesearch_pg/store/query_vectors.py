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


class _BinaryVectorType(UserDefinedType):
    sql_name = ""
    element = ""  # numpy dtype of one element on the wire (big-endian)

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def get_col_spec(self, **kw) -> str:
        return f"{self.sql_name}({self.dim})"

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


class _Halfvec(_BinaryVectorType):
    cache_ok = True
    sql_name, element = "HALFVEC", ">f2"


def halfvec_parameter(name: str, value: np.ndarray, dim: int) -> sa.Cast:
    """``CAST(:name AS HALFVEC(dim))`` bound to ``value`` in binary (float16 on the wire)."""
    return sa.cast(sa.bindparam(name, value, _Halfvec(dim)), _Halfvec(dim))


def send_halfvec(raw: psycopg.Connection) -> None:
    """Let this connection send pgvector's HalfVector, alone or in lists (halfvec[]) and COPY, in binary.
    An array names its elements' type OID, which is the database's own: looked up once per connection.
    Only the dumper is added; what the connection reads stays as it was."""
    if raw.adapters.types.get("halfvec") is not None:
        return
    info = TypeInfo.fetch(raw, "halfvec")
    info.register(raw)
    raw.adapters.register_dumper(HalfVector, type("HalfvecDumper", (HalfVectorBinaryDumper,), {"oid": info.oid}))
