"""The console's doors as a hostile visitor tries them (issue 25's console section): cookies copied before
a logout, a password change or a user's deletion; the headers of every kind of answer; where a login may
send the browser next."""

from __future__ import annotations

import logging
import re
import uuid
from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import example, given, settings as hypothesis_settings, strategies as st

from flask_app import create_app
from tests.pictures import encode, noise
from tests.test_console import app, token  # noqa: F401 (fixture)

PASSWORD = "a console session password"


@pytest.fixture(scope="module")
def member(service):
    """A user of this module, with a name no other run shares."""
    name = f"s{uuid.uuid4().hex[:12]}"
    service.console_users.create(name, PASSWORD)
    yield name
    service.console_users.delete(name)


@pytest.fixture(autouse=True)
def forget_failures(service):
    """Failed logins of a test do not hold back the next test's (they all come from the test client's address)."""
    yield
    with service.database.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM imagesearch.console_login_failures WHERE key = 'client:127.0.0.1'")


@pytest.fixture
def person(service):
    """A user of one test (it may delete or re-create it)."""
    name = f"p{uuid.uuid4().hex[:12]}"
    service.console_users.create(name, PASSWORD)
    yield name
    if service.console_users.session_generation(name) is not None:
        service.console_users.delete(name)


def log_in(app, name: str, password: str = PASSWORD):  # noqa: F811
    client = app.test_client()
    response = client.post("/login", data={"name": name, "password": password, "csrf_token": token(client)})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def holding(app, cookie: str):  # noqa: F811
    """A browser that sends this session cookie, as a thief who copied it would (whatever it is told to keep)."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


# ---- sessions a server can end ---------------------------------------------------------------------------------


def test_a_cookie_copied_before_logout_opens_nothing_after_it(app, person, service, make_instance):  # noqa: F811
    made = make_instance(capacity=10)
    client = log_in(app, person)
    form_token = token(client, "/")  # a form loaded while the session was good: the cookie holds its secret
    stolen = client.get_cookie("session").value
    assert holding(app, stolen).get("/").status_code == 200
    assert client.post("/logout", data={"csrf_token": form_token}).status_code == 302
    assert holding(app, stolen).get("/").status_code == 302  # pages
    assert holding(app, stolen).get(f"/instances/{made.name}").status_code == 302
    sent = holding(app, stolen).post(f"/instances/{made.name}/plan", data={"capacity": "77", "csrf_token": form_token})
    assert sent.status_code == 302 and sent.headers["Location"].startswith("/login")  # and forms
    assert service.describe_instance(made.name).capacity == 10


def test_logging_out_ends_the_users_other_sessions_but_logging_in_does_not(app, person):  # noqa: F811
    laptop, phone = log_in(app, person), log_in(app, person)
    assert laptop.get("/").status_code == 200 and phone.get("/").status_code == 200  # a second login ends none
    phone.post("/logout", data={"csrf_token": token(phone, "/")})
    assert laptop.get("/").status_code == 302
    assert log_in(app, person).get("/").status_code == 200  # a new login is good again


def test_a_new_password_ends_every_session(app, person, service):  # noqa: F811
    client = log_in(app, person)
    service.console_users.set_password(person, "the next password")
    assert client.get("/").status_code == 302
    refused = app.test_client()
    page = refused.post("/login", data={"name": person, "password": PASSWORD, "csrf_token": token(refused)})
    assert page.status_code == 403
    assert log_in(app, person, "the next password").get("/").status_code == 200


def test_a_deleted_user_made_again_does_not_revive_old_cookies(app, person, service):  # noqa: F811
    stolen = log_in(app, person).get_cookie("session").value
    service.console_users.delete(person)
    assert holding(app, stolen).get("/").status_code == 302
    service.console_users.create(person, PASSWORD)  # the same name, a new account
    assert holding(app, stolen).get("/").status_code == 302


def test_a_cookie_without_its_generation_opens_nothing(app, member):  # noqa: F811
    # Signed with the real key, as cookies made before sessions had generations were.
    app.test_client().get("/login")  # the key is read on a process's first console request
    forged = app.test_client()
    forged.set_cookie("session", app.session_interface.get_signing_serializer(app).dumps({"user": member}))
    assert forged.get("/").status_code == 302
    stale = app.test_client()
    stale.set_cookie("session", app.session_interface.get_signing_serializer(app).dumps({"user": member, "generation": -1}))
    assert stale.get("/").status_code == 302


# ---- headers on every kind of answer ---------------------------------------------------------------------------


def _pages(app, member, instance_name):  # noqa: F811
    """(kind, response, whether it was answered to a logged-in user) for every kind of answer."""
    anonymous = app.test_client()
    client = log_in(app, member)
    crashing = create_app({"SETTINGS": app.config["SETTINGS"], "SERVICE": app.config["SERVICE"]})
    crashing.add_url_rule("/instances/<name>/broken", "console.broken", lambda name: 1 / 0)  # a console page's bug
    broken_client = log_in(crashing, member)
    return [
        ("login page", anonymous.get("/login"), False),
        ("failed login", anonymous.post("/login", data={"name": member, "password": "wrong password!",
                                                        "csrf_token": token(anonymous)}), False),
        ("refused form", anonymous.post("/login", data={"name": member, "password": PASSWORD}), False),
        ("login redirect", anonymous.get("/"), False),
        ("static file", anonymous.get("/console/static/console.css"), False),
        ("unknown path", anonymous.get("/no/such/page"), False),
        ("health", anonymous.get("/health"), False),
        ("unsigned API call", anonymous.post("/", headers={"x-acs-action": "Detail"}), False),
        ("overview", client.get("/"), True),
        ("instance page", client.get(f"/instances/{instance_name}"), True),
        ("search page", client.get(f"/instances/{instance_name}/search"), True),
        ("no such instance", client.get("/instances/no-such-instance"), True),
        ("no such type", client.get("/types/nonsense"), True),
        ("wrong method", client.get("/logout"), False),  # Flask's refusal, before any console code
        ("bad form", client.post("/types/generic", data={"name": "x", "capacity": "lots",
                                                         "csrf_token": token(client, "/")}), True),
        ("thumbnail", client.get(f"/instances/{instance_name}/thumbnail?product_id=p&pic_name=1"), True),
        ("thumbnail not found", client.get(f"/instances/{instance_name}/thumbnail?product_id=a&pic_name=b"), True),
        ("server error", broken_client.get(f"/instances/{instance_name}/broken"), True),
    ]


def test_no_answer_can_be_framed_and_no_logged_in_page_is_stored(app, member, service, make_instance, caplog):  # noqa: F811
    made = make_instance()
    service.add_image(made.name, "p", "1", encode(noise(150, 150, seed=31)))
    with caplog.at_level(logging.CRITICAL, logger="flask_app"):  # the deliberate server error's traceback
        pages = _pages(app, member, made.name)
    kinds = {}
    for kind, response, logged_in in pages:
        kinds[kind] = response.status_code
        assert response.headers.get("X-Frame-Options") == "DENY", kind
        assert "frame-ancestors 'none'" in response.headers.get("Content-Security-Policy", ""), kind
        if logged_in:
            assert response.headers.get("Cache-Control") == "no-store", kind
    # every kind of answer was met: pages, redirects, refusals, what Flask itself answers and a crash
    assert {kinds["unknown path"], kinds["no such instance"], kinds["no such type"]} == {404}
    assert (kinds["wrong method"], kinds["refused form"], kinds["failed login"]) == (405, 400, 403)
    assert kinds["server error"] == 500 and kinds["overview"] == 200 and kinds["static file"] == 200
    assert kinds["thumbnail"] == 200


def _session_cookie(response) -> str:
    return next(value for value in response.headers.getlist("Set-Cookie") if value.startswith("session="))


@pytest.mark.parametrize("how, secure", [
    ({}, False),
    ({"base_url": "https://localhost", "headers": {"Referer": "https://localhost/login"}}, True),
    ({"headers": {"X-Forwarded-Proto": "https"}}, True),
    ({"headers": {"X-Forwarded-Proto": "http"}}, False),
])
def test_the_session_cookie_is_lax_httponly_and_secure_under_https(app, member, how, secure):  # noqa: F811
    client = app.test_client()
    response = client.post("/login", data={"name": member, "password": PASSWORD, "csrf_token": token(client)}, **how)
    assert response.status_code == 302
    cookie = _session_cookie(response)
    assert "SameSite=Lax" in cookie and "HttpOnly" in cookie
    assert ("Secure" in cookie.split("; ")) is secure


# ---- where a login sends the browser next ------------------------------------------------------------------------

SITE = "https://console.example/login"
PIECES = ["/", "//", "\\", "/\\", "\t", "\n", "\r", " ", "\x00", "\x0b", "\x1f", ":", "@", "?", "#", ".", "%",
          "%2F", "%5C", "%09", "%0A", "%0D", "%00", "%252F", "http:", "https://", "javascript:", "data:",
          "evil.example", "127.0.0.1", "[::1]", "\u3002", "\uff0f", "\uff3c", "\u2215", "\u2044", "\u00a0",
          "categories", "login?next=", "types/generic"]


def browser_reading(location: str) -> str:
    """Where a browser goes for this Location, read as the URL standard reads it (stripped of leading and
    trailing C0 controls and spaces, tabs and line breaks dropped, a backslash as a slash)."""
    cleaned = re.sub(r"[\t\n\r]", "", location.strip("".join(map(chr, range(0x21))))).replace("\\", "/")
    return urljoin(SITE, cleaned)


@hypothesis_settings(max_examples=40, deadline=None)
@given(target=st.one_of(st.lists(st.sampled_from(PIECES), max_size=8).map("".join), st.text(max_size=30)))
@example(target="/\t/evil.example/")  # the issue's: was Location //evil.example/
@example(target="/\n/evil")  # was a 500
@example(target="/\r\n/evil")
@example(target="/\\evil.example")
@example(target="\t//evil.example")
@example(target="/%09/evil.example")
@example(target="https:evil.example")
def test_a_login_only_ever_sends_the_browser_to_this_site(app, member, target):  # noqa: F811
    client = app.test_client()
    response = client.post("/login", query_string={"next": target},
                           data={"name": member, "password": PASSWORD, "csrf_token": token(client)})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith("/") and location[1:2] not in ("/", "\\")
    assert not re.search(r"[\x00-\x20\x7f\\]", location)  # nothing a browser would drop or read as a slash
    landing = urlsplit(browser_reading(location))
    assert (landing.scheme, landing.netloc) == ("https", "console.example")


def test_a_login_keeps_a_path_of_this_site(app, member):  # noqa: F811
    for target, expected in [("/categories", "/categories"), ("/types/generic?q=a b", "/types/generic?q=a%20b"),
                             ("/instances/caf\u00e9", "/instances/caf%C3%A9"), ("", "/"), ("categories", "/")]:
        client = app.test_client()
        response = client.post("/login", query_string={"next": target},
                               data={"name": member, "password": PASSWORD, "csrf_token": token(client)})
        assert response.headers["Location"] == expected, target
