"""Console accounts: argon2id hashes, the CLI, throttled logins, the session key."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from imagesearch_pg.cli import cli
from imagesearch_pg.errors import InvalidParameter, MissingParameter, NoPermission, Throttling
from imagesearch_pg.service import console_users
from imagesearch_pg.service.console_users import MAX_FAILURES, WINDOW_SECONDS, ConsoleUsers
from imagesearch_pg.store import console_users as user_store


@pytest.fixture
def users(service):
    made = []

    def make(name: str, password: str = "correct horse battery"):
        service.console_users.create(name, password)
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            service.console_users.delete(name)
        except InvalidParameter:
            pass
    with service.database.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM imagesearch.console_login_failures")


def test_a_password_is_kept_as_an_argon2id_hash(service, users, engine):
    users("ann")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM imagesearch.console_users WHERE name = 'ann'")).scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert "m=65536" in stored  # memory-hard: 64 MiB
    service.console_users.authenticate("ann", "correct horse battery", "127.0.0.1")
    with pytest.raises(NoPermission, match="wrong user name or password"):
        service.console_users.authenticate("ann", "correct horse batterY", "127.0.0.1")


def test_an_unknown_name_is_told_apart_from_nothing(service, users):
    users("bob")
    timings = {}
    for name in ("bob", "nobody-at-all"):
        began = time.perf_counter()
        with pytest.raises(NoPermission) as caught:
            service.console_users.authenticate(name, "not the password", "10.0.0.1")
        timings[name] = time.perf_counter() - began
        assert caught.value.message == "wrong user name or password"
    # both paths verify one argon2 hash (an unknown name is not visibly faster)
    assert timings["nobody-at-all"] > timings["bob"] / 4


def test_failed_logins_are_throttled_per_name_and_per_client(service, users):
    users("cid")
    for _ in range(MAX_FAILURES):
        with pytest.raises(NoPermission):
            service.console_users.authenticate("cid", "wrong password", "10.0.0.2")
    # the right password no longer gets in, for this name from anywhere ...
    with pytest.raises(Throttling, match="try again in 15 minutes"):
        service.console_users.authenticate("cid", "correct horse battery", "10.0.0.3")
    # ... and this client is held back for any name
    users("dee")
    with pytest.raises(Throttling):
        service.console_users.authenticate("dee", "correct horse battery", "10.0.0.2")
    service.console_users.authenticate("dee", "correct horse battery", "10.0.0.4")


def test_a_window_that_ended_counts_again_from_zero(service, users, engine):
    name = users(f"eve-{uuid.uuid4().hex[:10]}")
    client = f"window-{uuid.uuid4().hex[:10]}"
    for _ in range(MAX_FAILURES):
        with pytest.raises(NoPermission):
            service.console_users.authenticate(name, "wrong password", client)
    with pytest.raises(Throttling):
        service.console_users.authenticate(name, "correct horse battery", client)
    with engine.begin() as conn:  # the window began longer ago than it lasts
        conn.execute(sa.text("UPDATE imagesearch.console_login_failures SET window_start = window_start "
                             "- make_interval(secs => :seconds + 1) WHERE key IN (:u, :c)"),
                     {"seconds": console_users.WINDOW_SECONDS, "u": f"user:{name}", "c": f"client:{client}"})
    service.console_users.authenticate(name, "correct horse battery", client)


class CountingChecks(ConsoleUsers):
    """The service's own accounts, counting the passwords it checks (argon2 verifications)."""

    def __init__(self, database):
        super().__init__(database)
        self.checked = 0
        self._lock = threading.Lock()

    def _verify(self, stored, password):
        with self._lock:
            self.checked += 1
        return super()._verify(stored, password)


def test_simultaneous_wrong_passwords_are_checked_at_most_up_to_the_limit(service, users, engine):
    name = users(f"race-{uuid.uuid4().hex[:10]}")
    client = f"race-client-{uuid.uuid4().hex[:10]}"
    accounts = CountingChecks(service.database)
    attempts = 24
    start = threading.Barrier(attempts)
    outcomes, lock = [], threading.Lock()

    def attempt(i: int) -> None:
        start.wait()  # all at once
        try:
            accounts.authenticate(name, f"wrong password {i}", client)
        except (NoPermission, Throttling) as exc:
            with lock:
                outcomes.append(type(exc))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert accounts.checked == MAX_FAILURES
    assert outcomes.count(NoPermission) == MAX_FAILURES and outcomes.count(Throttling) == attempts - MAX_FAILURES
    with engine.connect() as conn:
        counted = dict(conn.execute(sa.text("SELECT key, failures FROM imagesearch.console_login_failures "
                                            "WHERE key IN (:u, :c)"), {"u": f"user:{name}", "c": f"client:{client}"}).all())
    # the address counts every attempt; the name only those the address was still allowed
    assert counted == {f"user:{name}": MAX_FAILURES, f"client:{client}": attempts}
    with pytest.raises(Throttling):  # the right password too, until the window ends
        accounts.authenticate(name, "correct horse battery", f"another-{client}")
    assert accounts.checked == MAX_FAILURES


def test_a_successful_login_gives_its_attempt_back(service, users):
    name = users(f"often-{uuid.uuid4().hex[:10]}")
    client = f"often-client-{uuid.uuid4().hex[:10]}"
    for _ in range(MAX_FAILURES - 1):
        with pytest.raises(NoPermission):
            service.console_users.authenticate(name, "wrong password", client)
    for _ in range(MAX_FAILURES + 2):  # more logins than the limit, all good, from one address
        assert service.console_users.authenticate(name, "correct horse battery", client) == \
            service.console_users.session_generation(name)


@pytest.mark.parametrize("name", ["nul\x00inside", "\x00", "a" * 65, "spa ce", "x" * 100_000])
def test_a_name_no_user_can_have_is_refused_unchecked(service, name):
    accounts = CountingChecks(service.database)
    with pytest.raises(InvalidParameter, match="user name .* is not allowed"):
        accounts.authenticate(name, "some password", f"odd-{uuid.uuid4().hex[:10]}")
    assert accounts.checked == 0


@pytest.mark.parametrize("name, password, error", [
    ("", "long enough pw", InvalidParameter), ("a b", "long enough pw", InvalidParameter),
    ("-lead", "long enough pw", InvalidParameter), ("x" * 65, "long enough pw", InvalidParameter),
    ("ok", "short", InvalidParameter), ("ok", "p" * 1025, InvalidParameter), ("ok", " padded pw ", InvalidParameter),
    ("ok", "nul\x00inside!", InvalidParameter),
])
def test_bad_names_and_passwords_are_refused(service, name, password, error):
    with pytest.raises(error):
        service.console_users.create(name, password)


def test_a_login_without_a_name_or_password_is_refused(service):
    with pytest.raises(MissingParameter):
        service.console_users.authenticate("", "x", "10.0.0.6")
    with pytest.raises(NoPermission):  # an over-long password is simply wrong (and never hashed at length)
        service.console_users.authenticate("someone", "p" * 100_000, "10.0.0.7")


def test_the_session_key_is_made_once(service):
    first = service.console_users.session_secret()
    assert len(first) == 64 and service.console_users.session_secret() == first


def test_the_cli_creates_lists_and_deletes(engine, settings, service):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    run = CliRunner()
    made = run.invoke(cli, ["users", "create", "fay", "--password-stdin"], input="a good password\n", env=env)
    assert made.exit_code == 0, made.output
    again = run.invoke(cli, ["users", "create", "fay", "--password-stdin"], input="another password\n", env=env)
    assert again.exit_code != 0 and "user 'fay' exists" in again.output
    short = run.invoke(cli, ["users", "create", "gus", "--password-stdin"], input="short\n", env=env)
    assert short.exit_code != 0 and "8-1024 characters" in short.output
    listed = json.loads(run.invoke(cli, ["users", "list", "--json"], env=env).stdout)
    assert [u["Name"] for u in listed] == ["fay"] and "a good password" not in json.dumps(listed)
    service.console_users.authenticate("fay", "a good password", "10.0.0.8")
    assert run.invoke(cli, ["users", "delete", "fay"], env=env).exit_code == 0
    missing = run.invoke(cli, ["users", "delete", "fay"], env=env)
    assert missing.exit_code != 0 and "no user named 'fay'" in missing.output


def test_the_cli_sets_a_new_password_and_ends_the_sessions(engine, settings, service, users):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    name = users(f"pw-{uuid.uuid4().hex[:10]}")
    before = service.console_users.authenticate(name, "correct horse battery", "10.0.0.9")
    changed = CliRunner().invoke(cli, ["users", "password", name, "--password-stdin"], input="the next password\n", env=env)
    assert changed.exit_code == 0, changed.output
    assert "sessions have ended" in changed.output
    assert service.console_users.session_generation(name) != before
    with pytest.raises(NoPermission):
        service.console_users.authenticate(name, "correct horse battery", "10.0.0.9")
    assert service.console_users.authenticate(name, "the next password", "10.0.0.9") == \
        service.console_users.session_generation(name)
    short = CliRunner().invoke(cli, ["users", "password", name, "--password-stdin"], input="short\n", env=env)
    assert short.exit_code != 0 and "8-1024 characters" in short.output
    nobody = CliRunner().invoke(cli, ["users", "password", f"no-{name}", "--password-stdin"],
                                input="a good password\n", env=env)
    assert nobody.exit_code != 0 and "no user named" in nobody.output
    deleted = CliRunner().invoke(cli, ["users", "delete", name], env=env)
    assert deleted.exit_code == 0 and service.console_users.session_generation(name) is None


def test_names_tried_from_a_blocked_address_fill_no_table_and_ended_windows_go(service, engine):
    """Trying many user names (none of them known) costs the table one row per address once it is blocked,
    and counts whose window has ended are forgotten."""
    client = f"spray-{uuid.uuid4().hex[:10]}"
    rows = sa.text("SELECT count(*) FROM imagesearch.console_login_failures WHERE key LIKE :k")
    for n in range(40):
        with pytest.raises((NoPermission, Throttling)):
            service.console_users.authenticate(f"spray{n}-{client}", "wrong password", client)
    with engine.connect() as conn:
        assert conn.execute(rows, {"k": f"user:spray%-{client}"}).scalar() == MAX_FAILURES
    with engine.begin() as conn:  # as if the window had ended
        conn.execute(sa.text("UPDATE imagesearch.console_login_failures SET window_start = now() - interval '1 day'"
                             " WHERE key LIKE :k"), {"k": f"%{client}"})
        assert user_store.forget_ended_windows(conn, WINDOW_SECONDS) >= MAX_FAILURES + 1
        assert conn.execute(rows, {"k": f"%{client}"}).scalar() == 0
