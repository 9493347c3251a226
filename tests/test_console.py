"""The console's doors without a browser: login, CSRF, sessions, the separation from the signed API, and
the instance pages' forms (tests/test_console_browser.py drives the same pages in Chromium)."""

from __future__ import annotations

import re

import pytest

from flask_app import create_app

PASSWORD = "console test password"


@pytest.fixture(scope="module")
def app(service, settings):
    return create_app({"SETTINGS": settings, "SERVICE": service})


@pytest.fixture
def account(service):
    service.console_users.create("tester", PASSWORD)
    yield "tester"
    service.console_users.delete("tester")
    with service.database.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM imagesearch.console_login_failures")


def token(client, path: str = "/login") -> str:
    page = client.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def logged_in(app, account):
    client = app.test_client()
    response = client.post("/login", data={"name": account, "password": PASSWORD, "csrf_token": token(client)})
    assert response.status_code == 302
    return client


def test_pages_ask_for_a_login_first(app):
    client = app.test_client()
    response = client.get("/")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    page = client.get("/login").get_data(as_text=True)
    assert '<label for="name">User name</label>' in page and '<label for="password">Password</label>' in page


def test_a_form_without_its_csrf_token_is_refused(app, account):
    client = app.test_client()
    client.get("/login")
    response = client.post("/login", data={"name": account, "password": PASSWORD})
    assert response.status_code == 400 and "did not come from this console" in response.get_data(as_text=True)
    forged = client.post("/login", data={"name": account, "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 400
    assert client.get("/").status_code == 302  # still not logged in


def test_a_wrong_password_is_refused(app, account):
    client = app.test_client()
    response = client.post("/login", data={"name": account, "password": "not it at all", "csrf_token": token(client)})
    assert response.status_code == 403 and "wrong user name or password" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_login_and_logout(app, account):
    client = logged_in(app, account)
    page = client.get("/").get_data(as_text=True)
    assert "Overview" in page and "Getting started" in page and account in page
    assert client.get("/logout").status_code == 405  # a link cannot log anyone out
    response = client.post("/logout", data={"csrf_token": token(client, "/")})
    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_next_goes_only_to_this_site(app, account):
    # A backslash is quoted: '/%5Cevil.example' is a path here, where '/\\evil.example' would be another site.
    for target, expected in [("/categories", "/categories"), ("https://evil.example/", "/"),
                             ("//evil.example/", "/"), ("/\\evil.example", "/%5Cevil.example")]:
        client = app.test_client()
        response = client.post(f"/login?next={target}",
                               data={"name": account, "password": PASSWORD, "csrf_token": token(client)})
        assert response.headers["Location"] == expected, target


def test_a_session_is_no_way_into_the_signed_api(app, account):
    client = logged_in(app, account)
    response = client.post("/", headers={"x-acs-action": "Detail"}, data={"InstanceName": "whatever"})
    assert response.status_code in (400, 403) and response.json["Code"] != "Success"
    assert "Signature" in response.json["Message"] or "signature" in response.json["Message"].lower() \
        or "AccessKey" in response.json["Message"]


def test_a_deleted_user_is_logged_out(app, service):
    service.console_users.create("shortlived", PASSWORD)
    client = logged_in(app, "shortlived")
    assert client.get("/").status_code == 200
    service.console_users.delete("shortlived")
    assert client.get("/").status_code == 302


def test_the_session_key_is_the_databases(app, service, account):
    client = logged_in(app, account)
    assert app.secret_key == service.console_users.session_secret()
    # another process (here: another app) with the same database accepts the same session cookie
    other = create_app({"SETTINGS": app.config["SETTINGS"], "SERVICE": service}).test_client()
    cookie = client.get_cookie("session")
    other.set_cookie("session", cookie.value)
    assert other.get("/").status_code == 200


def test_creating_an_instance_from_the_form(app, account, service):
    client = logged_in(app, account)
    form = {"name": "console-made", "capacity": "500", "qps": "3", "tags": "team=shop", "csrf_token": token(client, "/")}
    response = client.post("/types/generic", data=form)
    try:
        assert response.status_code == 302 and response.headers["Location"] == "/instances/console-made"
        made = service.describe_instance("console-made")
        assert (made.capacity, made.qps, made.tags) == (500, 3, {"team": "shop"})
        listed = client.get("/types/generic?q=CONSOLE").get_data(as_text=True)
        assert "console-made" in listed and "team=shop" in listed
        assert "console-made" not in client.get("/types/product").get_data(as_text=True)
        again = client.post("/types/generic", data=form)
        assert again.status_code == 400 and "console-made" in again.get_data(as_text=True)
    finally:
        service.delete_instance("console-made")


@pytest.mark.parametrize("field, value, words", [
    ("name", "bad name!", "instance name"),
    ("capacity", "lots", "Capacity must be a whole number"),
    ("qps", "-1", "qps must be an integer from 1 to"),
    ("qps", "three", "QPS must be a whole number"),
    ("tags", "no-equals-sign", "a tag is key=value"),
])
def test_bad_form_values_are_named_next_to_their_field(app, account, service, field, value, words):
    client = logged_in(app, account)
    form = {"name": "console-bad", "capacity": "100", "qps": "1", "tags": "", field: value,
            "csrf_token": token(client, "/")}
    response = client.post("/types/generic", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and words.lower() in page.lower()
    # the message sits in the field's own paragraph
    paragraph = re.search(rf'<p class="field">\s*<label for="{field}">.*?</p>', page, re.S).group(0)
    assert words.lower() in paragraph.lower()
    assert "console-bad" not in {i.name for i in service.list_instances()}


def test_an_unknown_type_or_instance_is_not_found(app, account):
    client = logged_in(app, account)
    assert client.get("/types/nonsense").status_code == 404
    assert client.get("/instances/no-such-instance").status_code == 404


def test_a_new_process_serves_a_login_page_and_an_old_session_first(service, settings, account):
    """A process's very first request opens the session before the key is read: it must still work, with
    or without a session cookie from another process."""
    fresh = create_app({"SETTINGS": settings, "SERVICE": service}).test_client()
    assert fresh.get("/login").status_code == 200
    client = logged_in(create_app({"SETTINGS": settings, "SERVICE": service}), account)
    cookie = client.get_cookie("session")
    other = create_app({"SETTINGS": settings, "SERVICE": service}).test_client()
    other.set_cookie("session", cookie.value)
    assert other.get("/").status_code == 200


def test_change_plan_and_renew(app, account, service, make_instance):
    from imagesearch_pg.errors import InvalidParameter

    made = make_instance(capacity=10)
    client = logged_in(app, account)
    csrf = token(client, "/")
    response = client.post(f"/instances/{made.name}/plan", data={"capacity": "20", "qps": "7", "csrf_token": csrf})
    assert response.status_code == 302
    assert (service.describe_instance(made.name).capacity, service.describe_instance(made.name).qps) == (20, 7)
    client.post(f"/instances/{made.name}/renew", data={"days": "30", "csrf_token": csrf})
    expires = service.describe_instance(made.name).expires_at
    assert expires is not None and 29 <= (expires - service.describe_instance(made.name).created_at).days <= 30
    client.post(f"/instances/{made.name}/renew", data={"days": "never", "csrf_token": csrf})
    assert service.describe_instance(made.name).expires_at is None
    bad = client.post(f"/instances/{made.name}/plan", data={"capacity": "lots", "csrf_token": csrf}, follow_redirects=True)
    assert "The plan was not changed: Capacity must be a whole number" in bad.get_data(as_text=True)
    # the service keeps the capacity above the pictures held
    from tests.pictures import encode, noise

    service.add_image(made.name, "p", "1", encode(noise(150, 150, seed=3)))
    service.add_image(made.name, "p", "2", encode(noise(150, 150, seed=4)))
    with pytest.raises(InvalidParameter, match="below the 2 pictures"):
        service.change_plan(made.name, capacity=1)
    assert service.describe_instance(made.name).capacity == 20


def test_thumbnails_or_kept_originals(app, account, service, settings, make_instance, database, encoders):
    from dataclasses import replace

    from imagesearch_pg.service import ImageSearch
    from tests.pictures import encode, noise

    made = make_instance()
    original = encode(noise(400, 300, seed=5))  # PNG
    service.add_image(made.name, "p", "small", original)
    client = logged_in(app, account)
    small = client.get(f"/instances/{made.name}/thumbnail?product_id=p&pic_name=small")
    assert small.status_code == 200 and small.mimetype == "image/jpeg" and len(small.data) < len(original)
    keeping = ImageSearch(database, encoders, replace(settings, keep_originals=True))
    keeping.add_image(made.name, "p", "kept", original)
    kept = client.get(f"/instances/{made.name}/thumbnail?product_id=p&pic_name=kept")
    assert kept.mimetype == "image/png" and kept.data == original
    assert client.get(f"/instances/{made.name}/thumbnail?product_id=p&pic_name=none").status_code == 404
    assert client.get(f"/instances/{made.name}/thumbnail?product_id=&pic_name=x").status_code == 404
    assert app.test_client().get(f"/instances/{made.name}/thumbnail?product_id=p&pic_name=small").status_code == 302


def test_the_overview_counts_running_expiring_and_expired(app, account, service, make_instance, engine):
    import sqlalchemy as sa

    names = [make_instance("fabric").name for _ in range(3)]
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE imagesearch.instances SET expires_at = now() + interval '2 days' WHERE name = :n"),
                     {"n": names[1]})
        conn.execute(sa.text("UPDATE imagesearch.instances SET expires_at = now() - interval '1 day' WHERE name = :n"),
                     {"n": names[2]})
    page = logged_in(app, account).get("/").get_data(as_text=True)
    fabric = page[page.index(">Fabric</a></h2>"):page.index(">Trademark</a></h2>")]
    counts = re.findall(r"<dt>([^<]+)</dt><dd>(\d+)</dd>", fabric)
    fabric_total = sum(1 for i in service.list_instances() if i.service_type == "fabric")
    assert dict(counts)["Instances"] == str(fabric_total)
    assert int(dict(counts)["Expiring soon"]) >= 1 and int(dict(counts)["Expired"]) >= 1
    assert int(dict(counts)["Running"]) == fabric_total - int(dict(counts)["Expired"])
