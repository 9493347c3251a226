"""AccessKey secrets at rest (README: "Secrets are stored encrypted (Fernet) with the key in
IMAGESEARCH_SECRET_KEY, or else in $IMAGESEARCH_HOME/secret.key (made on first use, mode 600); every server
of one deployment needs the same key"): what the table holds, where the key comes from, and what a server
with another key makes of a key pair."""

from __future__ import annotations

import base64
import os
import stat

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken

from imagesearch_pg.config import Settings
from imagesearch_pg.service.access_keys import AccessKeys, secret_box, secret_key
from imagesearch_pg.store.tables import access_keys as key_table
from tests.http_requests import post, signed_request


def stored_secret(engine, key_id: str) -> bytes:
    with engine.connect() as conn:
        return bytes(conn.execute(sa.select(key_table.c.secret_encrypted).where(key_table.c.id == key_id)).scalar_one())


def test_the_table_holds_each_secret_encrypted_with_the_deployments_key(service, engine, settings):
    key_id, secret = service.access_keys.create()
    try:
        stored = stored_secret(engine, key_id)
        for form in (secret.encode(), base64.b64encode(secret.encode()), base64.urlsafe_b64encode(secret.encode()),
                     secret.encode().hex().encode()):
            assert form not in stored
        # Fernet with the key of this deployment's home (no IMAGESEARCH_SECRET_KEY here) opens it, and no other.
        assert settings.secret_key is None
        assert Fernet(settings.secret_key_file.read_bytes().strip()).decrypt(stored) == secret.encode()
        with pytest.raises(InvalidToken):
            Fernet(Fernet.generate_key()).decrypt(stored)
        # The same secret encrypted twice is stored differently (Fernet's random IV): nothing to compare.
        other_id, _ = service.access_keys.create()
        try:
            assert stored_secret(engine, other_id) != stored
        finally:
            service.access_keys.revoke(other_id)
    finally:
        service.access_keys.revoke(key_id)


def test_without_the_variable_the_key_file_is_made_once_readable_by_its_owner_alone(tmp_path):
    home = tmp_path / "home"  # not there yet: made with the file
    settings = Settings.from_env({"IMAGESEARCH_HOME": str(home)})
    assert not settings.secret_key_file.exists()
    permissive = os.umask(0)  # the file's mode is the code's choice, not the process's umask
    try:
        made = secret_key(settings)
    finally:
        os.umask(permissive)
    key_file = home / "secret.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().strip() == made
    assert secret_key(Settings.from_env({"IMAGESEARCH_HOME": str(home)})) == made  # read again, not made anew
    assert Fernet(made).decrypt(secret_box(settings).encrypt(b"x")) == b"x"


def test_the_variable_wins_and_the_key_file_is_neither_read_nor_made(tmp_path):
    env_key = Fernet.generate_key()
    fresh = tmp_path / "fresh"
    settings = Settings.from_env({"IMAGESEARCH_HOME": str(fresh), "IMAGESEARCH_SECRET_KEY": env_key.decode()})
    assert secret_key(settings) == env_key
    assert not (fresh / "secret.key").exists()
    # A home whose key file holds another key: the variable's key is used all the same.
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret.key").write_bytes(Fernet.generate_key())
    settings = Settings.from_env({"IMAGESEARCH_HOME": str(home), "IMAGESEARCH_SECRET_KEY": env_key.decode()})
    assert secret_key(settings) == env_key
    assert Fernet(env_key).decrypt(secret_box(settings).encrypt(b"x")) == b"x"
    # ... and one that holds no key at all is never opened.
    (home / "secret.key").write_bytes(b"not a key")
    assert Fernet(env_key).decrypt(secret_box(settings).encrypt(b"x")) == b"x"


def test_a_key_pair_made_under_another_secret_key_is_an_unknown_key_to_the_server(service, server, server_logs):
    """The production server shares the tests' database and home: a pair whose secret was encrypted with
    another deployment's key cannot be opened there, and is refused as an unknown key, not as a failure."""
    key_id, secret = AccessKeys(service.database, Fernet(Fernet.generate_key())).create()
    try:
        body = f"InstanceName=t{os.getpid()}".encode()
        status, answer = post(server, signed_request(server, key_id, secret, body), body)
        assert (status, answer["Code"]) == (403, "InvalidAccessKeyId"), answer
        _, errors = server_logs()
        assert "Traceback" not in errors and secret not in errors
    finally:
        service.access_keys.revoke(key_id)
