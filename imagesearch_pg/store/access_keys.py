"""imagesearch.access_keys and imagesearch.request_nonces: key pairs (secrets encrypted by the caller)
and the nonces of signed requests already seen."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from imagesearch_pg.store.tables import access_keys, request_nonces


def insert(conn: sa.Connection, key_id: str, secret_encrypted: bytes, instances: list[str] | None) -> None:
    conn.execute(sa.insert(access_keys).values(id=key_id, secret_encrypted=secret_encrypted, instances=instances))


def listing(conn: sa.Connection) -> list[sa.Row]:
    """id, instances, created_at, revoked_at of every key, oldest first (never the secrets)."""
    return list(conn.execute(
        sa.select(access_keys.c.id, access_keys.c.instances, access_keys.c.created_at, access_keys.c.revoked_at)
        .order_by(access_keys.c.created_at, access_keys.c.id)
    ))


def revoke(conn: sa.Connection, key_id: str) -> bool:
    """False if there is no active key ``key_id``."""
    revoked = conn.execute(
        sa.update(access_keys)
        .where(access_keys.c.id == key_id, access_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
        .returning(access_keys.c.id)
    ).first()
    return revoked is not None


def active(conn: sa.Connection, key_id: str) -> sa.Row | None:
    """secret_encrypted and instances of the active key ``key_id``, or None."""
    return conn.execute(
        sa.select(access_keys.c.secret_encrypted, access_keys.c.instances).where(
            access_keys.c.id == key_id, access_keys.c.revoked_at.is_(None)
        )
    ).first()


def record_nonce(conn: sa.Connection, nonce: str) -> bool:
    """Record a request nonce; False if it was recorded before."""
    fresh = conn.execute(
        pg_insert(request_nonces)
        .values(nonce=nonce)
        .on_conflict_do_nothing(index_elements=["nonce"])
        .returning(request_nonces.c.nonce)
    ).first()
    return fresh is not None


def forget_nonces(conn: sa.Connection, keep: timedelta) -> int:
    """Forget the nonces first seen more than ``keep`` ago; how many."""
    return conn.execute(sa.delete(request_nonces).where(request_nonces.c.seen_at < sa.func.now() - keep)).rowcount
