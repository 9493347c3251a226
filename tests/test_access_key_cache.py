"""How long a server remembers an AccessKey, on a clock the test moves: the README promises that "a server
remembers a key for 10 s, so a revocation takes effect everywhere within 10 s". (Through the production
server, on the real clock: tests/test_concurrency.py.)"""

from __future__ import annotations

from imagesearch_pg.service.access_keys import AccessKeys, Credential, secret_box

PROMISED_SECONDS = 10.0  # the README's number, not the code's constant


class Clock:
    """Seconds that pass only when the test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_revoked_key_is_remembered_under_10_seconds_and_refused_from_then_on(database, settings, shop):
    clock = Clock()
    keys = AccessKeys(database, secret_box(settings), clock=clock)
    key_id, secret = keys.create([shop])
    looked_up = clock.now
    assert keys.credential(key_id) == Credential(secret, frozenset({shop}))
    keys.revoke(key_id)

    clock.now = looked_up + PROMISED_SECONDS - 0.01
    assert keys.credential(key_id) == Credential(secret, frozenset({shop}))  # remembered: no read per request
    # A process that had not looked the key up refuses it at once.
    assert AccessKeys(database, secret_box(settings), clock=clock).credential(key_id) is None

    clock.now = looked_up + PROMISED_SECONDS
    assert keys.credential(key_id) is None

