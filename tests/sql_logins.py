"""Real LOGIN roles for the SQL surface's tests, granted only what a DBA would grant, each with its own
connections (never SET ROLE from the superuser's session: a test must see what that role's own session
sees, its temporary schema and search_path included)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from imagesearch_pg.store import schema
from imagesearch_pg.store.database import create_engine


@dataclass
class Login:
    name: str
    engine: sa.Engine = field(repr=False)

    def run(self, statement: str, **values):
        """``statement`` in a transaction of its own, committed; its rows, if it returns any."""
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(statement), values)
            return result.all() if result.returns_rows else None

    def refused(self, statement: str, **values) -> sa.exc.DBAPIError:
        """The error ``statement`` ends in (rolled back); fails the test if it succeeds."""
        with pytest.raises(sa.exc.DBAPIError) as caught, self.engine.connect() as conn:
            conn.execute(sa.text(statement), values)
        return caught.value


class Logins:
    """Makes LOGIN roles on the test server; drops them (and what they own or were granted) at the end."""

    def __init__(self, engine: sa.Engine):
        self.admin = engine
        self.made: list[Login] = []

    def make(self, kind: str, *granted: str, create_in_vector_schema: bool = False) -> Login:
        name = f"is_{kind}_{os.getpid()}_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(18)
        with self.admin.begin() as conn:
            # Names and the password are ours (letters, digits, _ and -), never a caller's text.
            conn.exec_driver_sql(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
            for role in granted:
                conn.exec_driver_sql(f"GRANT {role} TO {name}")
            if create_in_vector_schema:
                conn.exec_driver_sql(f"GRANT CREATE ON SCHEMA {schema.vector_schema(conn)} TO {name}")
        url = self.admin.url.set(username=name, password=password)
        login = Login(name, create_engine(url.render_as_string(hide_password=False), search_path=None))
        self.made.append(login)
        return login

    def drop_all(self) -> None:
        for login in self.made:
            login.engine.dispose()
            with self.admin.begin() as conn:
                # A session still open (a test's held transaction) ends; its temporary objects go with it.
                conn.exec_driver_sql("SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE usename = %s",
                                     (login.name,))
                conn.exec_driver_sql(f"DROP OWNED BY {login.name} CASCADE")  # casts on its types too
                conn.exec_driver_sql(f"DROP ROLE {login.name}")
