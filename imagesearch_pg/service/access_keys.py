"""AccessKey pairs for signed requests: created (the secret shown once), listed, revoked, looked up; and
the nonces of signed requests, each accepted once.

The server must compute the same HMAC as the client, so it needs each secret itself: secrets are stored
encrypted with the deployment's secret key (Fernet), never in clear. That key comes from
IMAGESEARCH_SECRET_KEY (every server of a deployment needs the same one) or, by default, from a key file
made on first use under IMAGESEARCH_HOME (readable by its owner only).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from cryptography.fernet import Fernet, InvalidToken

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.service import validation
from imagesearch_pg.store import access_keys as key_store
from imagesearch_pg.store.database import Database

# A process remembers a looked-up key this long: one database read less per request, and a revoked key
# stops working within this time everywhere.
CREDENTIAL_TTL_SECONDS = 10.0
KEY_ID_PREFIX = "LTAI"  # the shape Alibaba Cloud's AccessKey ids have, so clients' checks accept ours


@dataclass(frozen=True)
class AccessKey:
    id: str
    instances: list[str] | None  # None: every instance
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Credential:
    """What a signature check needs: the secret, and where the key may be used."""

    secret: str
    instances: frozenset[str] | None

    def allows(self, instance_name: str) -> bool:
        return self.instances is None or instance_name in self.instances


def secret_key(settings: Settings) -> bytes:
    """The deployment's secret: IMAGESEARCH_SECRET_KEY, else the home's key file (made once)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path = settings.secret_key_file
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            pass
        else:
            with os.fdopen(fd, "wb") as f:
                f.write(Fernet.generate_key())
    return path.read_bytes().strip()


def secret_box(settings: Settings) -> Fernet:
    """The Fernet that encrypts secrets, keyed by secret_key."""
    try:
        return Fernet(secret_key(settings))
    except ValueError:
        raise InvalidParameter("IMAGESEARCH_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes)") from None


class AccessKeys:
    def __init__(self, database: Database, box: Fernet, clock: Callable[[], float] = time.monotonic):
        self.database = database
        self.box = box
        self.clock = clock  # seconds, for how long a key is remembered (tests pass their own)
        self._remembered: dict[str, tuple[float, Credential | None]] = {}

    def create(self, instances: list[str] | None = None) -> tuple[str, str]:
        """A new key pair, allowed on ``instances`` (None: all). Returns (id, secret): the only time the
        secret is shown."""
        for name in instances or []:
            validation.instance_name(name)
        key_id = KEY_ID_PREFIX + secrets.token_hex(10)
        secret = secrets.token_urlsafe(24)
        with self.database.transaction() as conn:
            key_store.insert(conn, key_id, self.box.encrypt(secret.encode()), sorted(set(instances)) if instances else None)
        return key_id, secret

    def listing(self) -> list[AccessKey]:
        with self.database.reading() as conn:
            return [AccessKey(*row) for row in key_store.listing(conn)]

    def revoke(self, key_id: str) -> None:
        with self.database.transaction() as conn:
            revoked = key_store.revoke(conn, key_id)
        if not revoked:
            raise InvalidParameter(f"no active AccessKey {key_id[:64]!r}")

    def credential(self, key_id: str) -> Credential | None:
        """The active key's secret and instances, or None (unknown or revoked); remembered for
        CREDENTIAL_TTL_SECONDS."""
        now = self.clock()
        remembered = self._remembered.get(key_id)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        found = self._read_credential(key_id)
        if len(self._remembered) > 10_000:  # unknown ids sent by strangers must not grow it without end
            self._remembered.clear()
        self._remembered[key_id] = (now + CREDENTIAL_TTL_SECONDS, found)
        return found

    def _read_credential(self, key_id: str) -> Credential | None:
        with self.database.reading() as conn:
            row = key_store.active(conn, key_id)
        if row is None:
            return None
        try:
            secret = self.box.decrypt(row.secret_encrypted).decode()
        except InvalidToken:  # made under another secret key: unusable here
            return None
        return Credential(secret, None if row.instances is None else frozenset(row.instances))

    def first_use_of_nonce(self, nonce: str, window: timedelta) -> bool:
        """Record a request nonce; False if it was seen before (a replay). Old nonces are forgotten now and
        then (forget_nonces), not with every request."""
        with self.database.transaction() as conn:
            fresh = key_store.record_nonce(conn, nonce)
        if secrets.randbelow(100) == 0:
            self.forget_nonces(window)
        return fresh

    def forget_nonces(self, window: timedelta) -> int:
        """Forget the nonces first seen more than twice ``window`` ago (how many): a request whose date may
        differ from the server's clock by ``window`` either way is accepted for at most twice ``window``
        after its first sight, and is refused for its date after that."""
        with self.database.transaction() as conn:
            return key_store.forget_nonces(conn, 2 * window)
