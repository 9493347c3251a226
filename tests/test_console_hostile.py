"""Hostile input through the console's forms: markup in stored text, paths out of a location, bodies over
the limit, pictures that are not pictures, forged and missing tokens, numbers of thousands of digits or of
other scripts, NUL in every field. (tests/test_console_sessions.py tries the sessions, headers and redirects.)"""

from __future__ import annotations

import io
import logging
import uuid

import pytest

from imagesearch_pg.attributes import Attributes
from tests.pictures import encode, noise
from tests.test_console import PASSWORD, account, app, logged_in, token  # noqa: F401 (fixtures)

MARKUP = '<img src=x onerror="alert(1)">'


def test_stored_text_is_shown_as_text(app, account, service, make_instance):  # noqa: F811
    made = make_instance()
    service.add_image(made.name, MARKUP, "a.png", encode(noise(150, 150, seed=1)),
                      attributes=Attributes(str_attr=MARKUP, custom_content="</pre><script>x()</script>"))
    service.add_image(made.name, "copy", "b.png", encode(noise(150, 150, seed=1)))
    client = logged_in(app, account)
    page = client.post(f"/instances/{made.name}/search", data={
        "mode": "stored", "product_id": MARKUP, "pic_name": "a.png", "crop": "on", "region_mode": "system",
        "num": "10", "start": "0", "filter": "", "csrf_token": token(client, "/")}).get_data(as_text=True)
    assert MARKUP not in page and "&lt;img src=x onerror=" in page and "<script>x()" not in page
    pairs = client.get(f"/instances/{made.name}/duplicates?min_score=0.9").get_data(as_text=True)
    assert MARKUP not in pairs and "&lt;img" in pairs


def test_a_batch_path_out_of_its_location_is_refused_beside_the_field(app, account, service, make_instance, tmp_path):  # noqa: F811
    made = make_instance()
    location = f"hostile-{made.name}"
    service.storage.add(location, str(tmp_path))
    try:
        client = logged_in(app, account)
        for path in ("/../..", "/x/../../etc", "no-slash", "/a\x00b"):
            response = client.post(f"/instances/{made.name}/batch", data={
                "location": location, "path": path, "callback": "", "csrf_token": token(client, "/")})
            page = response.get_data(as_text=True)
            assert response.status_code == 400, path
            assert 'id="path-error"' in page, path
        callback = client.post(f"/instances/{made.name}/batch", data={
            "location": location, "path": "/", "callback": "http://127.0.0.1:1/", "csrf_token": token(client, "/")})
        assert 'id="callback-error"' in callback.get_data(as_text=True)
        assert service.tasks.list_imports(made.name)[0] == 0
    finally:
        service.storage.remove(location)


def test_pictures_that_are_not_pictures_and_bodies_over_the_limit(app, account, make_instance):  # noqa: F811
    made = make_instance()
    client = logged_in(app, account)
    form = {"product_id": "p", "pic_name": "x", "crop": "on", "region_mode": "system", "csrf_token": token(client, "/")}
    response = client.post(f"/instances/{made.name}/add", data={**form, "picture": (io.BytesIO(b"GIF89a not really"), "x.gif")},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and 'id="picture-error"' in response.get_data(as_text=True)
    huge = client.post(f"/instances/{made.name}/add", data={**form, "picture": (io.BytesIO(b"\0" * (9 << 20)), "big.png")},
                       content_type="multipart/form-data")
    assert huge.status_code == 413 and "over 8 MB" in huge.get_data(as_text=True)
    region = client.post(f"/instances/{made.name}/add", data={
        **form, "region_mode": "custom", "region": "9,1,2,3",
        "picture": (io.BytesIO(encode(noise(150, 150, seed=2))), "p.png")}, content_type="multipart/form-data")
    assert region.status_code == 400 and 'id="region-error"' in region.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/types/generic", "/instances/{name}/add", "/instances/{name}/batch",
                                  "/instances/{name}/export", "/instances/{name}/clear", "/instances/{name}/plan",
                                  "/instances/{name}/renew", "/logout"])
def test_every_form_needs_its_token(app, account, service, make_instance, path):  # noqa: F811
    made = make_instance()
    client = logged_in(app, account)
    response = client.post(path.format(name=made.name), data={"name": "x", "confirmation": made.name, "capacity": "5"})
    assert response.status_code == 400 and "did not come from this console" in response.get_data(as_text=True)
    assert service.describe_instance(made.name).capacity != 5


# ---- numbers: every number a form reads, however long or strange ------------------------------------------------

BAD_NUMBERS = ["9" * 5000, "-" + "1" * 4301, "\u00b2", "--5", "\u0661\u0662", "1e3", "-", "0x10", "1_000", "7.5"]


def _no_error_logged(caplog) -> None:
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a traceback was logged"


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_bad_numbers_in_every_number_field_are_refused_beside_it(app, account, service, make_instance, caplog, value):  # noqa: F811
    made = make_instance("product", capacity=10)  # a product instance's forms have the category field too
    before = service.describe_instance(made.name)
    client = logged_in(app, account)
    csrf = token(client, "/")
    picture = encode(noise(150, 150, seed=21))
    created = f"n{uuid.uuid4().hex[:10]}"
    with caplog.at_level(logging.WARNING):
        for field, label in [("capacity", "Capacity"), ("qps", "QPS")]:
            form = {"name": created, "capacity": "100", "qps": "1", "tags": "", field: value, "csrf_token": csrf}
            page = client.post("/types/generic", data=form)
            assert page.status_code == 400 and f"{label} must be a whole number" in page.get_data(as_text=True)
            changed = client.post(f"/instances/{made.name}/plan", data={"capacity": "20", "qps": "2", field: value,
                                                                       "csrf_token": csrf}, follow_redirects=True)
            assert f"The plan was not changed: {label} must be a whole number" in changed.get_data(as_text=True)
        renewed = client.post(f"/instances/{made.name}/renew", data={"days": value, "csrf_token": csrf},
                              follow_redirects=True)
        assert "The instance was not renewed: Days must be a whole number" in renewed.get_data(as_text=True)
        for field, label in [("num", "Number of results"), ("start", "Start"), ("category_id", "Category")]:
            page = client.post(f"/instances/{made.name}/search", data={
                "mode": "stored", "product_id": "p", "pic_name": "1", "crop": "on", "region_mode": "system",
                "num": "10", "start": "0", "filter": "", field: value, "csrf_token": csrf})
            assert page.status_code == 400 and f"{label} must be a whole number" in page.get_data(as_text=True), field
        for field, label in [("category_id", "Category"), ("int_attr", "IntAttr"), ("int_attr4", "IntAttr4")]:
            page = client.post(f"/instances/{made.name}/add", data={
                "product_id": "p", "pic_name": "1", "crop": "on", "region_mode": "system", field: value,
                "csrf_token": csrf, "picture": (io.BytesIO(picture), "p.png")}, content_type="multipart/form-data")
            assert page.status_code == 400 and f"{label} must be a whole number" in page.get_data(as_text=True), field
        scores = client.get(f"/instances/{made.name}/duplicates", query_string={"min_score": value})
        assert scores.status_code == 400 and 'id="min_score-error"' in scores.get_data(as_text=True)
    _no_error_logged(caplog)
    after = service.describe_instance(made.name)
    assert (after.capacity, after.qps, after.expires_at, after.picture_count) == \
        (before.capacity, before.qps, before.expires_at, 0)
    assert created not in {i.name for i in service.list_instances()}


def test_a_task_number_in_the_path_of_any_length_is_no_server_error(app, account, make_instance, caplog):  # noqa: F811
    made = make_instance()
    client = logged_in(app, account)
    csrf = token(client, "/")
    with caplog.at_level(logging.WARNING):
        # the route's own converter refuses thousands of digits; the service, an id past the largest
        assert client.post(f"/instances/{made.name}/batch/{'9' * 5000}/resubmit", data={"csrf_token": csrf}).status_code == 404
        for digits in (30, 19):
            page = client.post(f"/instances/{made.name}/batch/{'9' * digits}/resubmit", data={"csrf_token": csrf},
                               follow_redirects=True)
            assert page.status_code == 200 and "Id must be an integer from 1 to" in page.get_data(as_text=True)
    _no_error_logged(caplog)


# ---- NUL in every text a form sends ------------------------------------------------------------------------------


def test_a_nul_in_a_login_is_refused_without_a_traceback(app, account, caplog):  # noqa: F811
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        name = client.post("/login", data={"name": f"{account}\x00", "password": PASSWORD, "csrf_token": token(client)})
        password = client.post("/login", data={"name": account, "password": f"{PASSWORD}\x00", "csrf_token": token(client)})
    assert name.status_code == 400 and "is not allowed" in name.get_data(as_text=True)
    assert password.status_code == 403
    _no_error_logged(caplog)
    assert client.get("/").status_code == 302


def test_a_nul_in_any_field_is_no_server_error(app, account, service, make_instance, tmp_path, caplog):  # noqa: F811
    made = make_instance()
    location = f"nul-{uuid.uuid4().hex[:10]}"
    service.storage.add(location, str(tmp_path))
    client = logged_in(app, account)
    csrf = token(client, "/")
    picture = encode(noise(150, 150, seed=22))
    nul = "a\x00b"
    search = {"mode": "stored", "product_id": "p", "pic_name": "1", "crop": "on", "region_mode": "system",
              "num": "10", "start": "0", "filter": "", "csrf_token": csrf}
    add = {"product_id": "p", "pic_name": "1", "crop": "on", "region_mode": "system", "csrf_token": csrf}
    sent = []
    try:
        with caplog.at_level(logging.WARNING):
            for field in ("name", "capacity", "qps", "tags"):
                sent.append(client.post("/types/generic", data={"name": "nul-made", "capacity": "100", "qps": "1",
                                                                "tags": "", field: nul, "csrf_token": csrf}))
            sent.append(client.get("/types/generic", query_string={"q": nul, "tag": nul}))
            for field in ("product_id", "pic_name", "filter", "mode", "region_mode"):
                sent.append(client.post(f"/instances/{made.name}/search", data={**search, field: nul}))
            for field in ("product_id", "pic_name", "str_attr", "custom_content", "region"):
                sent.append(client.post(f"/instances/{made.name}/add", data={
                    **add, "region_mode": "custom" if field == "region" else "system", "region": "", field: nul,
                    "picture": (io.BytesIO(picture), "p.png")}, content_type="multipart/form-data"))
            for field in ("location", "path", "callback"):
                sent.append(client.post(f"/instances/{made.name}/batch", data={
                    "location": location, "path": "/", "callback": "", field: nul, "csrf_token": csrf}))
            sent.append(client.get(f"/instances/{made.name}/batch", query_string={"path": nul}))
            sent.append(client.post(f"/instances/{made.name}/clear", data={"confirmation": nul, "csrf_token": csrf}))
            sent.append(client.post(f"/instances/{made.name}/renew", data={"days": nul, "csrf_token": csrf}))
            sent.append(client.get(f"/instances/{made.name}/duplicates", query_string={"min_score": nul}))
            sent.append(client.get(f"/instances/{made.name}/thumbnail", query_string={"product_id": nul, "pic_name": nul}))
            sent.append(client.get(f"/instances/{nul}"))
        assert [r.status_code for r in sent if r.status_code >= 500] == []
        assert {r.status_code for r in sent} <= {200, 302, 400, 404}
        _no_error_logged(caplog)
        assert service.describe_instance(made.name).picture_count == 0
        assert service.tasks.list_imports(made.name)[0] == 0
    finally:
        service.storage.remove(location)
