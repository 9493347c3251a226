"""The console's accounts: users made with the CLI, logins checked and throttled, the session key.

Passwords are hashed with argon2id (argon2-cffi, RFC 9106's low-memory parameters: 64 MiB, 3 passes).
A login names no reason beyond "wrong user name or password", and an unknown name costs the same hash as
a known one, so the form does not tell which names exist. Failures are counted per user name and per
client address in the database (every server process sees them): past MAX_FAILURES in WINDOW_SECONDS,
logins for that name, or from that address, are refused until the window ends.
"""

from __future__ import annotations

import math
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from imagesearch_pg.errors import InvalidParameter, MissingParameter, NoPermission, Throttling
from imagesearch_pg.store import console_users as user_store

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60


class UserExists(InvalidParameter):
    pass


class ConsoleUsers:
    def __init__(self, database):
        self.database = database
        self.hasher = PasswordHasher()
        self._unknown_hash: str | None = None  # what an unknown name is checked against

    def create(self, name: str, password: str) -> None:
        _check_name(name)
        _check_password(password)
        hashed = self.hasher.hash(password)
        with self.database.transaction() as conn:
            if not user_store.add(conn, name, hashed):
                raise UserExists(f"user {name!r} exists; delete it first to set a new password")

    def listing(self) -> list:
        with self.database.reading() as conn:
            return user_store.listing(conn)

    def exists(self, name: str) -> bool:
        with self.database.reading() as conn:
            return user_store.password_hash(conn, name) is not None

    def delete(self, name: str) -> None:
        with self.database.transaction() as conn:
            if not user_store.remove(conn, name):
                raise InvalidParameter(f"no user named {str(name)[:80]!r}")

    def authenticate(self, name: str, password: str, client: str) -> None:
        """Nothing if ``password`` is ``name``'s; NoPermission if not, Throttling past the failure limit."""
        if not name or not password:
            raise MissingParameter("enter a user name and a password")
        keys = [f"user:{name[:200]}", f"client:{client}"]
        with self.database.reading() as conn:
            counted = user_store.failures(conn, keys, WINDOW_SECONDS)
            stored = user_store.password_hash(conn, name) if len(password) <= MAX_PASSWORD else None
        blocked = [left for count, left in counted.values() if count >= MAX_FAILURES]
        if blocked:
            minutes = math.ceil(max(blocked) / 60)
            raise Throttling(f"too many failed logins for this user name or from this address; "
                             f"try again in {minutes} minute{'s' if minutes != 1 else ''}")
        if not self._verify(stored, password):
            with self.database.transaction() as conn:
                user_store.count_failure(conn, keys, WINDOW_SECONDS)
            raise NoPermission("wrong user name or password")
        rehashed = self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) else None
        with self.database.transaction() as conn:
            user_store.clear_failures(conn, keys[:1])
            user_store.logged_in(conn, name, rehashed)

    def session_secret(self) -> bytes:
        with self.database.transaction() as conn:
            return user_store.session_secret(conn)

    def _verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``; an unknown name (None) is checked against a hash of
        nothing, so that it takes as long and is never a match."""
        if stored is None and self._unknown_hash is None:
            self._unknown_hash = self.hasher.hash(secrets.token_urlsafe(16))
        try:
            matched = self.hasher.verify(stored or self._unknown_hash, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            matched = False
        return matched and stored is not None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidParameter(f"user name {str(name)[:80]!r} is not allowed: use 1-64 letters, digits, '.', '_', "
                               "'@' or '-', starting with a letter or digit")


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidParameter(f"a password has {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    if "\x00" in password or password.strip() != password:
        raise InvalidParameter("a password has no NUL characters and no spaces at its ends")
