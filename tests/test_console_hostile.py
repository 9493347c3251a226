"""Hostile input through the console's forms: markup in stored text, paths out of a location, bodies over
the limit, pictures that are not pictures, forged and missing tokens."""

from __future__ import annotations

import io

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
