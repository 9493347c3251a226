"""SQLAlchemy descriptions of the tables the migrations create, for building queries.

The migrations own the DDL; tests check that these descriptions and the migrated schema agree.
"""

from __future__ import annotations

import functools
import hashlib

import sqlalchemy as sa
from pgvector.sqlalchemy import HALFVEC
from sqlalchemy.dialects import postgresql as pg

from imagesearch_pg.attributes import INT_ATTRS, STR_ATTRS

metadata = sa.MetaData(schema="imagesearch")


class Xid8(sa.types.UserDefinedType):
    """PostgreSQL's 64-bit transaction id (pg_current_xact_id()); read as text where it is read."""

    cache_ok = True

    def get_col_spec(self, **kw) -> str:
        return "xid8"

encoders = sa.Table(
    "encoders",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("dim", sa.Integer, nullable=False),
    sa.Column("spec", pg.JSONB),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False, unique=True),
    sa.Column("service_type", sa.Text, nullable=False),
    sa.Column("capacity", sa.BigInteger, nullable=False),
    sa.Column("qps", sa.Integer, nullable=False),
    sa.Column("region", sa.Text, nullable=False),
    sa.Column("tags", pg.JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("encoder", sa.Text, sa.ForeignKey("encoders.name"), nullable=False),
    sa.Column("embedding_dim", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("picture_count", sa.BigInteger, nullable=False, server_default="0"),  # kept by every write
    # xid8 of the last transaction that wrote the instance's pictures (migration 0019, store/replicas.py)
    sa.Column("last_write_xid", Xid8, nullable=False, server_default=sa.text("pg_current_xact_id()")),
    sa.Column("shard", sa.Text, sa.ForeignKey("shards.name")),  # where its pictures are; NULL: here (0020)
)

shards = sa.Table(  # other PostgreSQL servers that hold instances' pictures (migration 0020)
    "shards",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("server", sa.Text, nullable=False),  # its postgres_fdw foreign server
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

pictures = sa.Table(
    "pictures",
    metadata,
    sa.Column("instance_id", sa.Integer, primary_key=True),  # no foreign key: see migration 0024
    sa.Column("key_digest", sa.LargeBinary, primary_key=True),  # key_digest() of (product_id, pic_name)
    sa.Column("product_id", sa.Text, nullable=False),
    sa.Column("pic_name", sa.Text, nullable=False),
    sa.Column("category_id", sa.Integer, nullable=False),
    sa.Column("category_given", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("custom_content", sa.Text),
    *(sa.Column(name, sa.Integer) for name in INT_ATTRS),
    *(sa.Column(name, sa.Text) for name in STR_ATTRS),
    sa.Column("region", sa.Text),
    sa.Column("embedding", HALFVEC(), nullable=False),  # vector until migration 0018
    sa.Column("silhouette", HALFVEC()),  # trademark encoder only, see migration 0006
    sa.Column("keypoints", sa.LargeBinary),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("thumbnail", sa.LargeBinary),  # a small JPEG for the console (migration 0017)
)

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("secret_encrypted", sa.LargeBinary, nullable=False),
    sa.Column("instances", pg.ARRAY(sa.Text)),  # NULL: every instance
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)

request_nonces = sa.Table(
    "request_nonces",
    metadata,
    sa.Column("nonce", sa.Text, primary_key=True),
    sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

request_counts = sa.Table(  # UNLOGGED (migration 0011)
    "request_counts",
    metadata,
    sa.Column("instance_id", sa.Integer, primary_key=True),
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("second", sa.BigInteger, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id"), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("params", pg.JSONB, nullable=False),
    sa.Column("progress", pg.JSONB, nullable=False),
    sa.Column("checkpoint", pg.JSONB),
    sa.Column("error_code", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("result_url", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_owner", sa.Text),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("callback_state", sa.Text),  # due, delivered, gave_up (migration 0014)
    sa.Column("callback_due_at", sa.DateTime(timezone=True)),
    sa.Column("callback_attempts", pg.JSONB, nullable=False),
)

task_errors = sa.Table(
    "task_errors",
    metadata,
    sa.Column("task_id", sa.BigInteger, sa.ForeignKey("tasks.id"), primary_key=True),
    sa.Column("line", sa.Integer, primary_key=True),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)

storage_locations = sa.Table(
    "storage_locations",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("endpoint", sa.Text),
    sa.Column("region", sa.Text),
    sa.Column("profile", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("instances", pg.ARRAY(sa.Text)),  # who may import from it; NULL: every instance (0015)
)


def key_digest(product_id: str, pic_name: str) -> bytes:
    """A picture's key within its instance (migration 0012: ProductId and PicName may outgrow a b-tree entry)."""
    return hashlib.sha256(f"{product_id}\x00{pic_name}".encode("utf-8")).digest()


def partition_name(instance_id: int, *, qualified: bool = False) -> str:
    """The name of an instance's partition, as imagesearch.create_picture_partition() makes it (sql/0001)."""
    name = f"pictures_{int(instance_id)}"
    return f"{metadata.schema}.{name}" if qualified else name


@functools.lru_cache(maxsize=4096)
def partition(instance_id: int) -> sa.TableClause:
    """An instance's own partition of ``pictures``.

    Searches name it directly: the planner then needs no statistics to see that every row belongs to the
    instance, and picks the partition's HNSW index even right after a bulk load.
    """
    return sa.table(
        partition_name(instance_id), *(sa.column(c.name, c.type) for c in pictures.c), schema=metadata.schema
    )

picture_queue = sa.Table(  # sql/0016_queue.sql: pictures written from SQL, for the worker
    "picture_queue",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id"), nullable=False),
    sa.Column("operation", sa.Text, nullable=False),
    sa.Column("product_id", sa.Text, nullable=False),
    sa.Column("pic_name", sa.Text),
    sa.Column("picture", sa.LargeBinary),
    sa.Column("location", sa.Text),
    sa.Column("path", sa.Text),
    sa.Column("attributes", pg.JSONB, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error_code", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
)

picture_queue_claims = sa.Table(  # migration 0022: the row a worker locks while it works on an instance's items
    "picture_queue_claims",
    metadata,
    sa.Column("instance_id", sa.Integer, sa.ForeignKey("instances.id"), primary_key=True),
)

console_users = sa.Table(  # migration 0017
    "console_users",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("password_hash", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("last_login_at", sa.DateTime(timezone=True)),
    # What every session cookie of the user must carry (migration 0021); a new one ends all sessions.
    sa.Column("session_generation", sa.BigInteger, nullable=False,
              server_default=sa.text("nextval('imagesearch.console_session_generations')")),
)

console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("window_start", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
)

console_secret = sa.Table(
    "console_secret",
    metadata,
    sa.Column("id", sa.Boolean, primary_key=True, server_default=sa.true()),
    sa.Column("secret", sa.LargeBinary, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
