"""Console accounts: argon2id hashes, the CLI, throttled logins, the session key."""

from __future__ import annotations

import json
import string
import threading
import uuid

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from imagesearch_pg.cli import cli
from imagesearch_pg.errors import InvalidParameter, MissingParameter, NoPermission, Throttling
from imagesearch_pg.service import console_users
from imagesearch_pg.service.console_users import MAX_FAILURES, WINDOW_SECONDS, ConsoleUsers
from imagesearch_pg.store import console_users as user_store


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Made:
    """User names (made as users or only tried) and client addresses of one test, unique to it; their users
    and login counts are removed after it, nobody else's."""

    def __init__(self, service):
        self.service = service
        self.names: list[str] = []
        self.clients: list[str] = []

    def __call__(self, prefix: str, password: str = "correct horse battery") -> str:
        """A user made with ``password``."""
        name = self.name(prefix)
        self.service.console_users.create(name, password)
        return name

    def name(self, prefix: str) -> str:
        self.names.append(unique(prefix))
        return self.names[-1]

    def client(self, prefix: str = "client") -> str:
        self.clients.append(unique(prefix))
        return self.clients[-1]

    def remove(self) -> None:
        for name in self.names:
            try:
                self.service.console_users.delete(name)
            except InvalidParameter:
                pass  # never made, or deleted by the test
        with self.service.database.transaction() as conn:
            user_store.clear_failures(conn, [f"user:{n}" for n in self.names] + [f"client:{c}" for c in self.clients])


@pytest.fixture
def users(service):
    made = Made(service)
    yield made
    made.remove()


def test_a_password_is_kept_as_an_argon2id_hash(service, users, engine):
    name, client = users("ann"), users.client()
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM imagesearch.console_users WHERE name = :n"),
                              {"n": name}).scalar()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    parameters = dict(pair.split("=") for pair in stored.split("$")[3].split(","))
    assert (parameters["m"], parameters["t"]) == ("65536", "3")  # docs/console.md: 64 MiB, 3 passes
    service.console_users.authenticate(name, "correct horse battery", client)
    with pytest.raises(NoPermission, match="wrong user name or password"):
        service.console_users.authenticate(name, "correct horse batterY", client)


class VerifyRecorder:
    """The accounts' password hasher, recording what each verification costs: the hash's algorithm, version
    and parameters (not its salt or digest)."""

    def __init__(self, hasher):
        self.hasher = hasher
        self.verified: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.hasher, name)

    def verify(self, stored: str, password: str) -> bool:
        self.verified.append(stored.split("$")[1:4])
        return self.hasher.verify(stored, password)


def test_an_unknown_name_is_told_apart_from_nothing(service, users):
    """Neither the answer nor the work tells an unknown name from a wrong password: each is one argon2
    verification with the same parameters."""
    accounts = ConsoleUsers(service.database)
    accounts.hasher = recorder = VerifyRecorder(accounts.hasher)
    client = users.client()
    for name in (users("bob"), users.name("nobody-at-all")):
        with pytest.raises(NoPermission) as caught:
            accounts.authenticate(name, "not the password", client)
        assert caught.value.message == "wrong user name or password"
    known, unknown = recorder.verified
    assert known == unknown and known[0] == "argon2id"


def test_failed_logins_are_throttled_per_name_and_per_client(service, users):
    cid, blocked = users("cid"), users.client()
    for _ in range(MAX_FAILURES):
        with pytest.raises(NoPermission):
            service.console_users.authenticate(cid, "wrong password", blocked)
    # the right password no longer gets in, for this name from anywhere ...
    with pytest.raises(Throttling, match="try again in 15 minutes"):
        service.console_users.authenticate(cid, "correct horse battery", users.client())
    # ... and this client is held back for any name
    dee = users("dee")
    with pytest.raises(Throttling):
        service.console_users.authenticate(dee, "correct horse battery", blocked)
    service.console_users.authenticate(dee, "correct horse battery", users.client())


def test_a_window_that_ended_counts_again_from_zero(service, users, engine):
    name = users("eve")
    client = users.client("window")
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
    name = users("race")
    client = users.client("race-client")
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
    name = users("often")
    client = users.client("often-client")
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
    ("ok", "short", InvalidParameter), ("ok", "p" * 7, InvalidParameter), ("ok", "p" * 1025, InvalidParameter),
    ("ok", " padded pw ", InvalidParameter),
    ("ok", "nul\x00inside!", InvalidParameter),
])
def test_bad_names_and_passwords_are_refused(service, name, password, error):
    with pytest.raises(error):
        service.console_users.create(name, password)


def test_the_longest_and_shortest_names_and_passwords_are_accepted(service, users):
    """docs/console.md: a name of 1-64 characters, a password of 8-1024 (one past either end is refused above)."""
    taken = {user.name for user in service.console_users.listing()}
    # one character leaves no room for a part unique to the test: a letter no user has
    short_name = next(c for c in string.ascii_letters + string.digits if c not in taken)
    long_name = unique("longest").ljust(64, "0")
    users.names += [short_name, long_name]
    client = users.client()
    for name, password in ((short_name, "8 chars!"), (long_name, "p" * 1024)):
        service.console_users.create(name, password)
        assert service.console_users.authenticate(name, password, client) == \
            service.console_users.session_generation(name)
    assert (len(short_name), len(long_name)) == (1, 64)


def test_a_login_without_a_name_or_password_is_refused(service, users):
    with pytest.raises(MissingParameter):
        service.console_users.authenticate("", "x", users.client())
    with pytest.raises(NoPermission):  # an over-long password is simply wrong (and never hashed at length)
        service.console_users.authenticate(users.name("someone"), "p" * 100_000, users.client())


def test_the_session_key_is_made_once(service):
    first = service.console_users.session_secret()
    assert len(first) == 64 and service.console_users.session_secret() == first


def test_the_cli_creates_lists_and_deletes(engine, settings, service, users):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    run = CliRunner()
    fay, gus = users.name("fay"), users.name("gus")
    made = run.invoke(cli, ["users", "create", fay, "--password-stdin"], input="a good password\n", env=env)
    assert made.exit_code == 0, made.output
    again = run.invoke(cli, ["users", "create", fay, "--password-stdin"], input="another password\n", env=env)
    assert again.exit_code != 0 and f"user '{fay}' exists" in again.output
    short = run.invoke(cli, ["users", "create", gus, "--password-stdin"], input="short\n", env=env)
    assert short.exit_code != 0 and "8-1024 characters" in short.output
    listed = json.loads(run.invoke(cli, ["users", "list", "--json"], env=env).stdout)
    names = [u["Name"] for u in listed]  # the database may hold other tests' users too
    assert fay in names and gus not in names and "a good password" not in json.dumps(listed)
    service.console_users.authenticate(fay, "a good password", users.client())
    assert run.invoke(cli, ["users", "delete", fay], env=env).exit_code == 0
    assert fay not in [u["Name"] for u in json.loads(run.invoke(cli, ["users", "list", "--json"], env=env).stdout)]
    missing = run.invoke(cli, ["users", "delete", fay], env=env)
    assert missing.exit_code != 0 and f"no user named '{fay}'" in missing.output


def test_the_cli_sets_a_new_password_and_ends_the_sessions(engine, settings, service, users):
    env = {"IMAGESEARCH_DATABASE_URL": engine.url.render_as_string(hide_password=False),
           "IMAGESEARCH_HOME": str(settings.home)}
    name, client = users("pw"), users.client()
    before = service.console_users.authenticate(name, "correct horse battery", client)
    changed = CliRunner().invoke(cli, ["users", "password", name, "--password-stdin"], input="the next password\n", env=env)
    assert changed.exit_code == 0, changed.output
    assert "sessions have ended" in changed.output
    assert service.console_users.session_generation(name) != before
    with pytest.raises(NoPermission):
        service.console_users.authenticate(name, "correct horse battery", client)
    assert service.console_users.authenticate(name, "the next password", client) == \
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
