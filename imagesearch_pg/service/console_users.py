"""The console's accounts: users made with the CLI, logins checked and throttled, sessions, the session key.

Passwords are hashed with argon2id (argon2-cffi, RFC 9106's low-memory parameters: 64 MiB, 3 passes).
A login names no reason beyond "wrong user name or password", and an unknown name costs the same hash as
a known one, so the form does not tell which names exist. Attempts are counted per user name and per
client address in the database (every server process sees them) before the password is checked, and a
success gives its own back: past MAX_FAILURES in WINDOW_SECONDS, logins for that name, or from that address,
are refused unchecked until the window ends, however many arrive at once.

A session is valid while it carries its user's session generation: logging out, a new password and
deleting the user end every session made before.
"""

from __future__ import annotations

import math
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from imagesearch_pg.errors import InvalidParameter, MissingParameter, NoPermission, Throttling
from imagesearch_pg.logs import Every
from imagesearch_pg.store import console_users as user_store

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
_FORGET_ENDED_WINDOWS = Every(600.0)  # counts of ended windows go now and then, not with every login


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
                raise UserExists(f"user {name!r} exists; `imagesearch users password {name}` sets a new password")

    def set_password(self, name: str, password: str) -> None:
        """A new password for ``name``; every session of the user ends."""
        _check_password(password)
        hashed = self.hasher.hash(password)
        with self.database.transaction() as conn:
            if not user_store.new_generation(conn, name, hashed):
                raise _no_user(name)

    def listing(self) -> list:
        with self.database.reading() as conn:
            return user_store.listing(conn)

    def session_generation(self, name: str) -> int | None:
        """What a session of ``name`` must carry to be valid; None if there is no such user."""
        with self.database.reading() as conn:
            return user_store.session_generation(conn, name)

    def end_sessions(self, name: str) -> None:
        """End every session of ``name`` (a user already deleted has none)."""
        with self.database.transaction() as conn:
            user_store.new_generation(conn, name)

    def delete(self, name: str) -> None:
        with self.database.transaction() as conn:
            if not user_store.remove(conn, name):
                raise _no_user(name)

    def authenticate(self, name: str, password: str, client: str) -> int:
        """The user's session generation if ``password`` is ``name``'s; NoPermission if not, Throttling past
        the limit, InvalidParameter for a name no user can have."""
        if not name or not password:
            raise MissingParameter("enter a user name and a password")
        _check_name(name)
        client_key, user_key = f"client:{client}", f"user:{name}"
        left = None  # seconds until a limit that was passed lets go
        with self.database.transaction() as conn:  # committed before the hash: concurrent attempts see it
            # The address first (always in this order: no deadlock): an address past its limit adds no count
            # for the name it tries, so trying many names from it fills no table.
            for key in (client_key, user_key):
                count, key_left = user_store.count_attempt(conn, key, WINDOW_SECONDS)
                if count > MAX_FAILURES:
                    left = key_left
                    break
            if _FORGET_ENDED_WINDOWS:
                user_store.forget_ended_windows(conn, WINDOW_SECONDS)
            stored = user_store.password_hash(conn, name) if left is None and len(password) <= MAX_PASSWORD else None
        if left is not None:
            minutes = math.ceil(left / 60)
            raise Throttling(f"too many failed logins for this user name or from this address; "
                             f"try again in {minutes} minute{'s' if minutes != 1 else ''}")
        if not self._verify(stored, password):
            raise NoPermission("wrong user name or password")  # the attempt stays counted
        rehashed = self.hasher.hash(password) if self.hasher.check_needs_rehash(stored) else None
        with self.database.transaction() as conn:
            user_store.clear_failures(conn, [user_key])
            user_store.uncount_attempt(conn, client_key)
            generation = user_store.logged_in(conn, name, stored, rehashed)
        if generation is None:  # a new password, or the user deleted, while this one was checked
            raise NoPermission("wrong user name or password")
        return generation

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


def _no_user(name: str) -> InvalidParameter:
    return InvalidParameter(f"no user named {str(name)[:80]!r}")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidParameter(f"user name {str(name)[:80]!r} is not allowed: use 1-64 letters, digits, '.', '_', "
                               "'@' or '-', starting with a letter or digit")


def _check_password(password: str) -> None:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidParameter(f"a password has {MIN_PASSWORD}-{MAX_PASSWORD} characters")
    if "\x00" in password or password.strip() != password:
        raise InvalidParameter("a password has no NUL characters and no spaces at its ends")
