"""The console's accounts (migration 0017): users and their session generations (0021), login attempts
counted per key, the session key."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert

from imagesearch_pg.store.tables import console_login_failures, console_secret, console_users

_generations = sa.Sequence("console_session_generations", schema="imagesearch")


def add(conn: sa.Connection, name: str, password_hash: str) -> bool:
    """False if the name is taken."""
    return conn.execute(insert(console_users).values(name=name, password_hash=password_hash)
                        .on_conflict_do_nothing().returning(console_users.c.name)).first() is not None


def password_hash(conn: sa.Connection, name: str) -> str | None:
    return conn.execute(sa.select(console_users.c.password_hash).where(console_users.c.name == name)).scalar()


def session_generation(conn: sa.Connection, name: str) -> int | None:
    """What ``name``'s session cookies must carry; None if there is no such user."""
    return conn.execute(sa.select(console_users.c.session_generation).where(console_users.c.name == name)).scalar()


def new_generation(conn: sa.Connection, name: str, new_hash: str | None = None) -> bool:
    """End every session of ``name`` (and set a new password hash, if given); False if there is no such user."""
    values = {"session_generation": _generations.next_value(), **({"password_hash": new_hash} if new_hash else {})}
    return conn.execute(sa.update(console_users).where(console_users.c.name == name).values(**values)).rowcount > 0


def logged_in(conn: sa.Connection, name: str, checked_hash: str, new_hash: str | None) -> int | None:
    """Record a login with the password ``checked_hash`` matched and return the user's session generation;
    None if that is no longer the user's password (changed, or the user deleted, meanwhile). ``new_hash``:
    the password hashed again with the current parameters."""
    values = {"last_login_at": sa.func.now(), **({"password_hash": new_hash} if new_hash else {})}
    return conn.execute(sa.update(console_users)
                        .where(console_users.c.name == name, console_users.c.password_hash == checked_hash)
                        .values(**values).returning(console_users.c.session_generation)).scalar()


def listing(conn: sa.Connection) -> list[sa.Row]:
    return list(conn.execute(sa.select(console_users.c.name, console_users.c.created_at,
                                       console_users.c.last_login_at).order_by(console_users.c.name)))


def remove(conn: sa.Connection, name: str) -> bool:
    return conn.execute(sa.delete(console_users).where(console_users.c.name == name)).rowcount > 0


def count_attempt(conn: sa.Connection, key: str, window_seconds: float) -> tuple[int, float]:
    """One more attempt for ``key``, and its attempts in its window (this one included) with the seconds left
    of the window; a key whose window ended starts a new one. The row lock it takes makes concurrent attempts
    count one after another, until the transaction ends."""
    window = sa.func.make_interval(0, 0, 0, 0, 0, 0, window_seconds)
    table = console_login_failures
    expired = table.c.window_start < sa.func.now() - window
    statement = insert(table).values(key=key, failures=1).on_conflict_do_update(index_elements=["key"], set_={
        "failures": sa.case((expired, 1), else_=table.c.failures + 1),
        "window_start": sa.case((expired, sa.func.now()), else_=table.c.window_start),
    }).returning(table.c.failures, sa.func.extract("epoch", table.c.window_start + window - sa.func.now()))
    count, left = conn.execute(statement).one()
    return count, float(left)


def forget_ended_windows(conn: sa.Connection, window_seconds: float) -> int:
    """Drop the counts whose window has ended (each name a client tried leaves one); returns how many."""
    window = sa.func.make_interval(0, 0, 0, 0, 0, 0, window_seconds)
    return conn.execute(sa.delete(console_login_failures)
                        .where(console_login_failures.c.window_start < sa.func.now() - window)).rowcount


def uncount_attempt(conn: sa.Connection, key: str) -> None:
    """Give back one attempt counted for ``key`` (one that succeeded)."""
    conn.execute(sa.update(console_login_failures).where(console_login_failures.c.key == key)
                 .values(failures=sa.func.greatest(console_login_failures.c.failures - 1, 0)))


def clear_failures(conn: sa.Connection, keys: list[str]) -> None:
    conn.execute(sa.delete(console_login_failures).where(console_login_failures.c.key.in_(keys)))


def session_secret(conn: sa.Connection) -> bytes:
    """The key console sessions are signed with: made once (64 random bytes), then read."""
    conn.execute(insert(console_secret).values(id=True, secret=secrets.token_bytes(64)).on_conflict_do_nothing())
    return conn.execute(sa.select(console_secret.c.secret)).scalar_one()
