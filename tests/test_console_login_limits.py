"""The console's numbers, as docs/console.md gives them: "Five failed logins in 15 minutes, for one user name
or from one client address, hold that name (or that address) back until the 15 minutes are over", and "A
cookie is refused past 31 days in any case". Each count's window is moved in the database, as if the time
had passed; the cookies are stamped in the past with the console's own signer. Nothing waits for a clock."""

from __future__ import annotations

import time
import uuid

import pytest
import requests
import sqlalchemy as sa
from itsdangerous import TimestampSigner

from flask_app import create_app
from imagesearch_pg.errors import NoPermission, Throttling
from imagesearch_pg.store.tables import console_login_failures

PASSWORD = "the right password"
WRONG = "not the password"
DAY = 24 * 3600


@pytest.fixture
def user(service):
    """A user of this test alone; the failure counts of the names and addresses the test used go after it."""
    name = f"limit-{uuid.uuid4().hex[:12]}"
    service.console_users.create(name, PASSWORD)
    counted = []
    yield name, counted
    service.console_users.delete(name)
    with service.database.transaction() as conn:
        conn.execute(sa.delete(console_login_failures).where(console_login_failures.c.key.in_(
            [f"user:{name}", *(f"client:{address}" for address in counted)])))


def address(counted: list) -> str:
    """A client address no other test or run uses."""
    made = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    counted.append(made)
    return made


def fail(service, name: str, client: str) -> None:
    with pytest.raises(NoPermission):
        service.console_users.authenticate(name, WRONG, client)


def test_four_failures_for_a_name_leave_its_password_checked(service, user):
    name, counted = user
    for _ in range(4):
        fail(service, name, address(counted))
    assert service.console_users.authenticate(name, PASSWORD, address(counted)) >= 0


def test_five_failures_for_a_name_hold_it_back_for_15_minutes(service, user):
    name, counted = user
    for _ in range(5):  # each from another address: the name's count alone
        fail(service, name, address(counted))
    with pytest.raises(Throttling, match="try again in 15 minutes"):
        service.console_users.authenticate(name, PASSWORD, address(counted))


def test_five_failures_from_an_address_hold_it_back_for_every_name(service, user):
    name, counted = user
    client = address(counted)
    for _ in range(5):  # each for another name: the address's count alone
        fail(service, f"nobody-{uuid.uuid4().hex[:12]}", client)
    with pytest.raises(Throttling, match="try again in 15 minutes"):
        service.console_users.authenticate(name, PASSWORD, client)
    assert service.console_users.authenticate(name, PASSWORD, address(counted)) >= 0  # the name is free


def window_began(service, key: str, seconds_ago: int) -> None:
    with service.database.transaction() as conn:
        moved = conn.execute(sa.update(console_login_failures).where(console_login_failures.c.key == key)
                             .values(window_start=sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, seconds_ago)))
    assert moved.rowcount == 1


def test_a_name_held_back_is_free_once_15_minutes_have_passed(service, user):
    name, counted = user
    for _ in range(5):
        fail(service, name, address(counted))
    window_began(service, f"user:{name}", 15 * 60 - 5)  # 14 min 55 s ago (5 s for the attempt itself to start)
    with pytest.raises(Throttling, match="try again in 1 minute"):
        service.console_users.authenticate(name, PASSWORD, address(counted))
    window_began(service, f"user:{name}", 15 * 60 + 1)
    assert service.console_users.authenticate(name, PASSWORD, address(counted)) >= 0


def test_an_address_held_back_is_free_once_15_minutes_have_passed(service, user):
    name, counted = user
    client = address(counted)
    for _ in range(5):
        fail(service, f"nobody-{uuid.uuid4().hex[:12]}", client)
    window_began(service, f"client:{client}", 15 * 60 - 5)
    with pytest.raises(Throttling):
        service.console_users.authenticate(name, PASSWORD, client)
    window_began(service, f"client:{client}", 15 * 60 + 1)
    assert service.console_users.authenticate(name, PASSWORD, client) >= 0


# ---- the session cookie's age, on the production server ----------------------------------------------------


def stamped(service, settings, session: dict, seconds_ago: int) -> str:
    """A session cookie as the console signs it (its own session interface and key), dated ``seconds_ago``."""
    app = create_app({"SETTINGS": settings, "SERVICE": service})
    app.secret_key = service.console_users.session_secret()
    serializer = app.session_interface.get_signing_serializer(app)
    stamp = int(time.time()) - seconds_ago

    class Dated(TimestampSigner):
        def get_timestamp(self) -> int:
            return stamp

    serializer.signer = Dated
    return serializer.dumps(session)


def opens(server: str, cookie: str) -> bool:
    answer = requests.get(f"http://{server}/", cookies={"session": cookie}, allow_redirects=False, timeout=30)
    assert answer.status_code in (200, 302), answer.status_code
    if answer.status_code == 302:
        assert answer.headers["Location"].startswith("/login")
    return answer.status_code == 200


def test_a_session_cookie_is_refused_past_31_days(service, settings, server, user):
    name, _ = user
    session = {"user": name, "generation": service.console_users.session_generation(name)}
    assert opens(server, stamped(service, settings, session, 0))
    assert opens(server, stamped(service, settings, session, 31 * DAY - 60))
    assert not opens(server, stamped(service, settings, session, 31 * DAY + 60))
