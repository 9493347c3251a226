"""The console's accounts (migration 0017): users, failed-login counts, the session key."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from imagesearch_pg.store.tables import console_login_failures, console_secret, console_users


def add(conn: sa.Connection, name: str, password_hash: str) -> bool:
    """False if the name is taken."""
    return conn.execute(insert(console_users).values(name=name, password_hash=password_hash)
                        .on_conflict_do_nothing().returning(console_users.c.name)).first() is not None


def password_hash(conn: sa.Connection, name: str) -> str | None:
    return conn.execute(sa.select(console_users.c.password_hash).where(console_users.c.name == name)).scalar()


def logged_in(conn: sa.Connection, name: str, new_hash: str | None) -> None:
    """Record a login; ``new_hash``: the password hashed again with the current parameters."""
    values = {"last_login_at": sa.func.now(), **({"password_hash": new_hash} if new_hash else {})}
    conn.execute(sa.update(console_users).where(console_users.c.name == name).values(**values))


def listing(conn: sa.Connection) -> list[sa.Row]:
    return list(conn.execute(sa.select(console_users.c.name, console_users.c.created_at,
                                       console_users.c.last_login_at).order_by(console_users.c.name)))


def remove(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.delete(console_users).where(console_users.c.name == name)).rowcount > 0


def failures(conn: sa.Connection, keys: list[str], window_seconds: float) -> dict[str, tuple[int, float]]:
    """Each key's failures in its current window and the seconds left of it (windows past their end count 0)."""
    rows = conn.execute(sa.select(
        console_login_failures.c.key, console_login_failures.c.failures,
        sa.func.extract("epoch", console_login_failures.c.window_start
                        + sa.func.make_interval(0, 0, 0, 0, 0, 0, window_seconds) - sa.func.now()),
    ).where(console_login_failures.c.key.in_(keys)))
    return {key: (count, float(left)) for key, count, left in rows if left > 0}


def count_failure(conn: sa.Connection, keys: list[str], window_seconds: float) -> None:
    """One more failure for each key; a key whose window ended starts a new one."""
    expired = console_login_failures.c.window_start < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, window_seconds)
    for key in keys:
        statement = insert(console_login_failures).values(key=key, failures=1)
        conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_={
            "failures": sa.case((expired, 1), else_=console_login_failures.c.failures + 1),
            "window_start": sa.case((expired, sa.func.now()), else_=console_login_failures.c.window_start),
        }))


def clear_failures(conn: sa.Connection, keys: list[str]) -> None:
    conn.execute(sa.delete(console_login_failures).where(console_login_failures.c.key.in_(keys)))


def session_secret(conn: sa.Connection) -> bytes:
    """The key console sessions are signed with: made once (64 random bytes), then read."""
    conn.execute(insert(console_secret).values(id=True, secret=secrets.token_bytes(64)).on_conflict_do_nothing())
    return conn.execute(sa.select(console_secret.c.secret)).scalar_one()
