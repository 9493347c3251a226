"""Callbacks of finished tasks: delivered to a real receiver on loopback through failures and timeouts,
retried with backoff and given up after the last attempt, every attempt recorded; and the address check
that keeps an API caller from making the server post into the operator's own network."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given, settings as hypothesis_settings
from hypothesis import strategies as st

from imagesearch_pg.config import Settings
from imagesearch_pg.errors import InvalidParameter
from imagesearch_pg.service.tasks import Tasks
from imagesearch_pg.store import callbacks, tasks
from imagesearch_pg.store.tables import instances
from imagesearch_pg.store.tables import tasks as task_table
from imagesearch_pg.tasks.callback_policy import CallbackPolicy, InvalidCallbackSettings
from imagesearch_pg.tasks.callbacks import deliver, message, run_due_callbacks

TIMEOUT = 0.5  # of one delivery, in these tests
HINT = "the operator can allow such networks with IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS"


# ---- a receiver on loopback that answers each POST by the next step of its script ----------------------


class Receiver:
    """Steps: an HTTP status; "slow" (200 long after the client's timeout); "drip" (a status line one byte
    at a time); ("redirect", url). After the script, 200."""

    def __init__(self, script=(), tls: ssl.SSLContext | None = None):
        self.script = list(script)
        self.requests: list[tuple[dict, dict]] = []  # (headers, body)
        self.server_names: list[str | None] = []  # TLS SNI
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), json.loads(body)))
                step = receiver.script.pop(0) if receiver.script else 200
                if step == "slow":
                    time.sleep(3 * TIMEOUT)
                    step = 200
                if step == "drip":
                    for byte in b"HTTP/1.1 200 OK\r\n":
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(0.1)
                    return
                self.send_response(step[0] if isinstance(step, tuple) else step, "")
                if isinstance(step, tuple):
                    self.send_header("Location", step[1])
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.handle_error = lambda request, address: None  # clients hang up on slow answers
        if tls is not None:
            tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_port
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}/hooks/task?token=abc"


@pytest.fixture
def receiver():
    started = []

    def start(script=(), tls=None) -> Receiver:
        started.append(Receiver(script, tls))
        return started[-1]

    yield start
    for made in started:
        made.httpd.shutdown()
        made.httpd.server_close()


# ---- tasks with a callback, finished as a worker finishes them -------------------------------------------


@pytest.fixture
def instance_id(service, make_instance, engine):
    made = make_instance("generic")
    with engine.begin() as conn:
        found = conn.execute(sa.select(instances.c.id).where(instances.c.name == made.name)).scalar_one()
    yield found
    with engine.begin() as conn:
        conn.execute(sa.delete(task_table).where(task_table.c.instance_id == found))


def finished_task(engine, instance_id: int, address: str, state: str = "succeeded",
                  error: str | None = None) -> int:
    with engine.begin() as conn:
        task_id = tasks.submit(conn, instance_id, "import", {"callback_address": address}).id
    with engine.begin() as conn:
        assert tasks.claim(conn, "worker", 30, only=[task_id]).id == task_id
    with engine.begin() as conn:
        assert tasks.finish(conn, task_id, "worker", state, error_message=error)
        assert callbacks.mark_due(conn, task_id)
    return task_id


def callback_of(engine, task_id: int):
    with engine.connect() as conn:
        return conn.execute(sa.select(task_table.c.callback_state, task_table.c.callback_due_at,
                                      task_table.c.callback_attempts, task_table.c.finished_at)
                            .where(task_table.c.id == task_id)).one()


def results_url(due) -> str:
    return f"https://results.example/tasks/{due.id}/errors.jsonl"


def run_until_settled(database, engine, policy, task_id: int, seconds: float = 15):
    """Run rounds as a worker would until the callback is delivered or given up."""
    ends = time.monotonic() + seconds
    while (row := callback_of(engine, task_id)).callback_state == "due":
        assert time.monotonic() < ends, f"the callback is still due after {seconds} s: {row.callback_attempts}"
        run_due_callbacks(database, policy, results_url)
        time.sleep(0.02)
    return row


@pytest.fixture
def loopback_policy(settings) -> CallbackPolicy:
    made = CallbackPolicy.from_settings(replace(
        settings, callback_allowed_networks=("127.0.0.0/8", "::1/128"), callback_retry_seconds=0.05,
        callback_attempts=3))
    return replace(made, timeout=TIMEOUT)


def _times(attempts: list[dict]) -> list[dt.datetime]:
    return [dt.datetime.fromisoformat(attempt["at"]) for attempt in attempts]


# ---- delivery, retries, giving up --------------------------------------------------------------------


def test_a_callback_is_delivered_after_a_failure_and_a_timeout(database, engine, instance_id, receiver,
                                                               loopback_policy):
    hook = receiver([500, "slow", 200])
    task_id = finished_task(engine, instance_id, hook.url())

    row = run_until_settled(database, engine, loopback_policy, task_id)

    assert row.callback_state == "delivered" and row.callback_due_at is None
    assert [(a["outcome"], a["status"], a["error"]) for a in row.callback_attempts] == [
        ("failed", 500, "HTTP 500"), ("failed", None, "no answer within 0.5 s"), ("delivered", 200, None)]
    first, second, third = _times(row.callback_attempts)
    assert second - first >= dt.timedelta(seconds=0.05)  # the first retry's delay
    assert third - second >= dt.timedelta(seconds=TIMEOUT + 0.1)  # the timeout, then twice the delay
    headers, body = hook.requests[-1]
    assert len(hook.requests) == 3 and all(sent == body for _, sent in hook.requests)
    assert headers["Host"] == f"127.0.0.1:{hook.port}" and headers["Content-Type"].startswith("application/json")
    with engine.connect() as conn:
        name = conn.execute(sa.select(instances.c.name).where(instances.c.id == instance_id)).scalar_one()
    assert body == {
        "finishTime": row.finished_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "instanceId": str(instance_id), "instanceName": name, "message": "success",
        "processResultUrl": f"https://results.example/tasks/{task_id}/errors.jsonl",
        "status": "NORMAL", "taskId": task_id}
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", body["finishTime"])
    run_due_callbacks(database, loopback_policy, results_url)  # a delivered callback is not sent again
    assert callback_of(engine, task_id) == row and len(hook.requests) == 3


def test_a_callback_is_given_up_after_the_last_attempt(database, engine, instance_id, receiver, loopback_policy):
    hook = receiver([503] * 10)
    task_id = finished_task(engine, instance_id, hook.url(), "failed", "no increment.meta file")
    with engine.connect() as conn:
        assert callbacks.next_due_in(conn) == 0.0

    row = run_until_settled(database, engine, loopback_policy, task_id)

    assert row.callback_state == "gave_up" and row.callback_due_at is None
    assert [a["outcome"] for a in row.callback_attempts] == ["failed"] * 3  # callback_attempts = 3
    first, second, third = _times(row.callback_attempts)
    assert second - first >= dt.timedelta(seconds=0.05) and third - second >= dt.timedelta(seconds=0.1)
    assert len(hook.requests) == 3
    assert hook.requests[0][1]["status"] == "FAIL" and hook.requests[0][1]["message"] == "no increment.meta file"
    run_due_callbacks(database, loopback_policy, results_url)  # a callback given up is not sent again
    assert callback_of(engine, task_id) == row and len(hook.requests) == 3


def test_an_address_refused_at_delivery_is_given_up_at_once(database, engine, instance_id, receiver, settings):
    hook = receiver()
    task_id = finished_task(engine, instance_id, hook.url())  # the operator allows no network
    policy = replace(CallbackPolicy.from_settings(settings), retry_seconds=0.05)

    row = run_until_settled(database, engine, policy, task_id)

    assert row.callback_state == "gave_up"
    [attempt] = row.callback_attempts
    assert attempt["outcome"] == "refused" and attempt["status"] is None and "a loopback address" in attempt["error"]
    assert hook.requests == []


# ---- the schedule as shipped (README: "retried after 5, 10, 20 ... s up to 8 attempts") and its settings ----

SHIPPED_DELAYS = [5, 10, 20, 40, 80, 160, 320]  # the README's schedule: 8 attempts, 7 waits between them


def test_a_failing_callback_is_retried_on_the_shipped_schedule_and_given_up_after_8_attempts(
        database, engine, instance_id, receiver):
    """Settings as shipped, but for the receiver's network: each failed attempt makes the callback due
    again, in the database, that much later. The test does not wait: it records each due time, then makes
    the callback due at once."""
    policy = CallbackPolicy.from_settings(Settings.from_env({"IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8"}))
    hook = receiver([503] * 20)
    task_id = finished_task(engine, instance_id, hook.url())
    waits = []
    for _ in range(20):
        due_first(engine, task_id)
        run_due_callbacks(database, policy, results_url, limit=1)
        row = callback_of(engine, task_id)
        if row.callback_state != "due":
            break
        waits.append((row.callback_due_at - _times(row.callback_attempts)[-1]).total_seconds())

    assert (row.callback_state, row.callback_due_at, len(hook.requests)) == ("gave_up", None, 8)
    assert [a["outcome"] for a in row.callback_attempts] == ["failed"] * 8
    # Each wait counts from the attempt's start: the delivery's own time (an instant 503) comes on top.
    assert len(waits) == len(SHIPPED_DELAYS), waits
    assert all(delay <= wait < delay + 5 for delay, wait in zip(SHIPPED_DELAYS, waits)), waits


def test_the_schedule_follows_its_settings():
    shipped = CallbackPolicy.from_settings(Settings.from_env({}))
    assert [shipped.retry_delay(made) for made in range(1, 9)] == SHIPPED_DELAYS + [None]
    assert shipped.timeout == 10.0
    set_up = CallbackPolicy.from_settings(Settings.from_env({
        "IMAGESEARCH_CALLBACK_RETRY_SECONDS": "1.5", "IMAGESEARCH_CALLBACK_ATTEMPTS": "3"}))
    assert [set_up.retry_delay(made) for made in range(1, 4)] == [1.5, 3.0, None]
    for wrong in ({"IMAGESEARCH_CALLBACK_ATTEMPTS": "0"}, {"IMAGESEARCH_CALLBACK_RETRY_SECONDS": "0"}):
        with pytest.raises(InvalidCallbackSettings, match="IMAGESEARCH_CALLBACK_ATTEMPTS must be at least 1"):
            CallbackPolicy.from_settings(Settings.from_env(wrong))


def due_first(engine, task_id: int) -> None:
    """Make the task's callback due before any other in the database (its lease ran out long ago), so that
    a claim of one callback claims it and leaves other tests' callbacks alone."""
    with engine.begin() as conn:
        conn.execute(sa.update(task_table).where(task_table.c.id == task_id, task_table.c.callback_state == "due")
                     .values(callback_due_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))


def test_a_claimed_callback_is_held_off_other_workers_until_its_lease_ends(engine, instance_id):
    task_id = finished_task(engine, instance_id, "http://192.0.2.1/hook")
    due_first(engine, task_id)
    with engine.begin() as conn:
        assert [due.id for due in callbacks.claim_due(conn, 30, 1)] == [task_id]
    with engine.connect() as conn:  # another worker does not find it (rolled back: others' stay unclaimed)
        assert task_id not in [due.id for due in callbacks.claim_due(conn, 30, 1000)]
        conn.rollback()
    due_first(engine, task_id)  # the first worker died, and its lease ran out
    with engine.begin() as conn:
        [due] = callbacks.claim_due(conn, 30, 1)
    assert (due.id, due.kind, due.state, due.attempts) == (task_id, "import", "succeeded", [])
    assert due.params == {"callback_address": "http://192.0.2.1/hook"}


def test_only_a_finished_task_with_an_address_becomes_due(engine, instance_id):
    with engine.begin() as conn:
        without = tasks.submit(conn, instance_id, "import", {}).id
    with engine.begin() as conn:
        assert not callbacks.mark_due(conn, without)  # not finished
        tasks.claim(conn, "worker", 30, only=[without])
        tasks.finish(conn, without, "worker", "succeeded")
        assert not callbacks.mark_due(conn, without)  # no address


def test_a_late_failure_does_not_reopen_a_delivered_callback(engine, instance_id):
    task_id = finished_task(engine, instance_id, "http://192.0.2.1/hook")
    delivered = {"at": "2026-01-01T00:00:00.000+00:00", "outcome": "delivered", "status": 200, "error": None}
    failed = {**delivered, "outcome": "failed", "status": 500, "error": "HTTP 500"}
    with engine.begin() as conn:
        callbacks.record(conn, task_id, delivered, None, "delivered")
        callbacks.record(conn, task_id, failed, 5.0, None)  # from a worker whose lease had ended
    row = callback_of(engine, task_id)
    assert row.callback_state == "delivered" and row.callback_due_at is None
    assert row.callback_attempts == [delivered, failed]


def test_the_message_of_each_final_state():
    due = callbacks.DueCallback(7, 3, "shop", "import", "partially_failed", None, None,
                                dt.datetime(2026, 5, 1, 12, 30, 5, tzinfo=dt.timezone(dt.timedelta(hours=8))),
                                {}, [])
    assert message(due, None) == {
        "finishTime": "2026-05-01 04:30:05", "instanceId": "3", "instanceName": "shop",
        "message": "finished; some lines failed", "processResultUrl": "", "status": "NORMAL", "taskId": 7}
    assert message(replace(due, state="succeeded"), "u")["message"] == "success"
    failed = message(replace(due, state="failed", error_message="no permission to read increment.meta"), "u")
    assert (failed["status"], failed["message"]) == ("FAIL", "no permission to read increment.meta")


# ---- one delivery --------------------------------------------------------------------------------------


def test_a_redirect_is_not_followed(receiver, loopback_policy):
    elsewhere = receiver()
    for location in ("http://169.254.169.254/latest/meta-data/", elsewhere.url()):
        hook = receiver([(302, location)])
        attempt = deliver(hook.url(), {"taskId": "1"}, loopback_policy)
        assert (attempt.outcome, attempt.status) == ("failed", 302)
        assert attempt.error == "HTTP 302: redirects are not followed"
        assert len(hook.requests) == 1
    assert elsewhere.requests == []  # not even to an allowed address


def test_the_checked_address_is_the_one_connected_to(receiver, loopback_policy, monkeypatch):
    """A name resolved once: a second lookup (DNS rebinding) could answer with the metadata service."""
    hook = receiver()
    answers = iter(["127.0.0.1", "169.254.169.254"])
    looked_up = []
    real = socket.getaddrinfo

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        looked_up.append(host)
        return real(next(answers), port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    attempt = deliver(hook.url("rebind.test"), {"taskId": "1"}, loopback_policy)
    assert attempt.outcome == "delivered" and looked_up == ["rebind.test"]
    assert hook.requests[0][0]["Host"] == f"rebind.test:{hook.port}"


def test_a_receiver_answering_byte_by_byte_is_cut_at_the_timeout(receiver, loopback_policy):
    hook = receiver(["drip"])
    began = time.monotonic()
    attempt = deliver(hook.url(), {}, loopback_policy)
    assert (attempt.outcome, attempt.error) == ("failed", "no answer within 0.5 s")
    assert time.monotonic() - began < TIMEOUT + 0.5


def test_network_failures_are_attempts_not_exceptions(loopback_policy):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()[1]
    refused = deliver(f"http://127.0.0.1:{closed_port}/", {}, loopback_policy)
    assert (refused.outcome, refused.status, refused.error) == ("failed", None, "Connection refused")
    unresolved = deliver("http://nonexistent.invalid/", {}, loopback_policy)  # the DNS may be back later
    assert unresolved.outcome == "failed" and "does not resolve" in unresolved.error


# ---- TLS: the host's name in SNI and in the certificate check, while connecting to the checked address ----


def _certificate(name: str, issuer_key=None, issuer=None):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer or subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1)))
    if issuer is None:  # a CA
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = (builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
    return key, builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture
def tls_for(tmp_path, monkeypatch):
    """A server context for a name, with a certificate from a CA the client trusts (SSL_CERT_FILE)."""
    ca_key, ca = _certificate("callback test CA")
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))

    def server_context(name: str) -> ssl.SSLContext:
        key, certificate = _certificate(name, ca_key, ca.subject)
        path = tmp_path / f"{name}.pem"
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(path)
        return context

    return server_context


def test_https_names_the_host_in_sni_and_checks_its_certificate(receiver, loopback_policy, tls_for):
    hook = receiver(tls=tls_for("localhost"))
    attempt = deliver(hook.url("localhost", "https"), {"taskId": "1"}, loopback_policy)
    assert attempt.outcome == "delivered"
    assert hook.server_names == ["localhost"] and hook.requests[0][0]["Host"] == f"localhost:{hook.port}"

    impostor = receiver(tls=tls_for("elsewhere.test"))
    attempt = deliver(impostor.url("localhost", "https"), {}, loopback_policy)
    assert attempt.outcome == "failed" and attempt.error.startswith("TLS certificate refused")
    assert impostor.requests == []


def test_https_to_a_plain_http_receiver_fails(receiver, loopback_policy):
    hook = receiver()
    attempt = deliver(hook.url(scheme="https"), {}, loopback_policy)
    assert attempt.outcome == "failed" and attempt.error.startswith("TLS failed")
    assert hook.requests == []


# ---- the address check -------------------------------------------------------------------------------


def _loopback(address: str) -> str:
    return f"resolves to {address}, a loopback address; {HINT}"


@pytest.mark.parametrize(("url", "says"), [
    ("http://127.0.0.1/hook", _loopback("127.0.0.1")),
    ("http://localhost:8080/hook", _loopback("127.0.0.1")),
    ("http://[::1]/", "resolves to ::1, a loopback address"),
    ("http://[::ffff:127.0.0.1]/", _loopback("127.0.0.1")),
    ("http://2130706433/", _loopback("127.0.0.1")),  # decimal, hexadecimal, octal and short IPv4 forms
    ("http://0x7f000001/", _loopback("127.0.0.1")),
    ("http://017700000001/", _loopback("127.0.0.1")),
    ("http://127.1/", _loopback("127.0.0.1")),
    ("http://10.0.0.1/", "10.0.0.1, a private address"),
    ("http://192.168.1.1/", "192.168.1.1, a private address"),
    ("http://172.16.0.1/", "172.16.0.1, a private address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
    ("http://100.64.0.1/", "100.64.0.1, a shared address"),
    ("http://0.0.0.0/", "0.0.0.0, an unspecified address"),
    ("http://[::]/", "resolves to ::, an unspecified address"),
    ("http://224.0.0.1/", "a multicast address"),
    ("http://255.255.255.255/", "a reserved address"),
    ("http://[fd00::1]/", "fd00::1, a unique-local address"),
    ("http://[fe80::1]/", "fe80::1, a link-local address"),
    ("http://[ff02::1]/", "a multicast address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "a link-local address (where cloud metadata services answer) "
                                     "(169.254.169.254 within IPv6)"),
    ("http://[2002:0a00:0001::]/", "a private address (10.0.0.1 within IPv6)"),
    ("ftp://example.com/", "must be an http or https URL"),
    ("file:///etc/passwd", "must be an http or https URL"),
    ("javascript:alert(1)", "must be an http or https URL"),
    ("", "must be an http or https URL"),
    ("http:///hook", "has no host"),
    ("http://user:pass@example.com/", "must not contain a user name or password"),
    ("http://token@example.com/", "must not contain a user name or password"),
    ("http://example.com/a\r\nX-Injected: 1", "must not contain spaces or control characters"),
    ("http://example.com/\u202e", "must not contain spaces or control characters"),
    ("http://example.com/" + "a" * 1010, "has 1029 characters; at most 1024 are allowed"),
    ("http://example.com:99999/", "invalid port"),
    ("http://nonexistent.invalid/", "host 'nonexistent.invalid' does not resolve"),
])
def test_refused_addresses(url, says):
    with pytest.raises(InvalidParameter, match=re.escape(says)):
        CallbackPolicy().check(url)


@pytest.mark.parametrize("url", ["http://8.8.8.8/hook?token=abc", "https://1.1.1.1:8443/", "http://[2606:4700::1111]/",
                                 "http://[::ffff:8.8.8.8]/", "http://93.184.215.14/ünïcode?q=%20"])
def test_public_addresses_are_accepted(url):
    CallbackPolicy().check(url)


def test_networks_the_operator_allows_are_accepted(settings):
    policy = CallbackPolicy.from_settings(replace(settings, callback_allowed_networks=("127.0.0.0/8", "::1/128")))
    for url in ("http://127.0.0.1:9/", "http://localhost/", "http://[::1]/", "http://2130706433/",
                "http://[::ffff:127.0.0.2]/"):
        policy.check(url)
    with pytest.raises(InvalidParameter, match="10.0.0.1, a private address"):
        policy.check("http://10.0.0.1/")


def test_several_allowed_networks_are_read_from_the_environment(service, shop, tmp_path):
    """README: IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS holds CIDRs, comma-separated; each one is allowed (spaces
    around a comma and empty parts are no networks), and what none of them holds is still refused, both when a
    task is submitted and by the policy its worker delivers with."""
    settings = Settings.from_env({**os.environ, "IMAGESEARCH_HOME": str(service.settings.home),
                                  "IMAGESEARCH_CALLBACK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1/128,,10.9.0.0/16 "})
    assert settings.callback_allowed_networks == ("127.0.0.0/8", "::1/128", "10.9.0.0/16")
    policy = CallbackPolicy.from_settings(settings)
    for url in ("http://127.0.0.1:9/", "http://[::1]/", "http://10.9.255.1/"):
        policy.check(url)
    for url, says in (("http://10.10.0.1/", "10.10.0.1, a private address"),
                      ("http://192.168.1.1/", "192.168.1.1, a private address")):
        with pytest.raises(InvalidParameter, match=re.escape(says)):
            policy.check(url)

    tasks_now = Tasks(service.instances, service.storage, settings)  # the service's queue, with these settings
    name = f"cb-{os.getpid()}"
    service.storage.add(name, str(tmp_path))
    try:
        for url in ("http://127.0.0.1:9/hook", "http://[::1]:9/hook", "http://10.9.0.1/hook"):
            assert tasks_now.submit_import(shop, name, "/", url).params["callback_address"] == url
        with pytest.raises(InvalidParameter, match="a private address"):
            tasks_now.submit_import(shop, name, "/", "http://10.10.0.1/hook")
    finally:
        service.storage.remove(name)


def test_allowed_networks_must_be_networks(settings):
    with pytest.raises(InvalidCallbackSettings, match="'10.0.0.0/33' is not a network"):
        CallbackPolicy.from_settings(replace(settings, callback_allowed_networks=("10.0.0.0/33",)))


# The IANA special-purpose IPv4 registry, written out here independently of the code's table.
SPECIAL_IPV4 = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")]
REFUSED_IPV6 = [ipaddress.ip_network(n) for n in (
    "::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10", "ff00::/8")]


def _refused(host: str, policy: CallbackPolicy = CallbackPolicy()) -> bool:
    try:
        policy.check(f"http://{host}/")
    except InvalidParameter:
        return True
    return False


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.ip_addresses(v=4))
def test_an_ipv4_address_is_refused_exactly_when_it_is_special(address):
    special = any(address in network for network in SPECIAL_IPV4)
    assert _refused(str(address)) == special
    assert _refused(f"[::ffff:{address}]") == special  # the same, IPv4-mapped
    assert _refused(str(int(address))) == special  # the same, as one decimal number


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.sampled_from(REFUSED_IPV6).flatmap(lambda network: st.ip_addresses(network=network)))
def test_an_ipv6_address_in_a_refused_network_is_refused(address):
    assert _refused(f"[{address}]")


@hypothesis_settings(max_examples=200, deadline=None)
@given(st.ip_addresses(network="2400::/6"))
def test_a_global_unicast_ipv6_address_is_accepted(address):
    assert not _refused(f"[{address}]")


@hypothesis_settings(max_examples=100, deadline=None)
@given(st.sampled_from(SPECIAL_IPV4 + REFUSED_IPV6).flatmap(
    lambda network: st.tuples(st.just(network), st.ip_addresses(network=network))))
def test_an_address_in_an_allowed_network_is_accepted(case):
    network, address = case
    host = f"[{address}]" if address.version == 6 else str(address)
    assert not _refused(host, CallbackPolicy(allowed_networks=(network,)))
