"""The console in Chromium, as a person uses it: a keyboard, labels, buttons (tests/browser.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from imagesearch_pg.attributes import Attributes
from tests.browser import browser, page  # noqa: F401 (fixtures)

PASSWORD = "browser test password"


@pytest.fixture
def account(service):
    service.console_users.create("viewer", PASSWORD)
    yield "viewer"
    service.console_users.delete("viewer")
    with service.database.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM imagesearch.console_login_failures")


def log_in(page, server: str, name: str, password: str) -> None:  # noqa: F811
    page.goto(f"http://{server}/")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_a_wrong_password_then_the_right_one(page, server, account):  # noqa: F811
    log_in(page, server, account, "not the password")
    expect(page.get_by_role("alert")).to_have_text("wrong user name or password")
    log_in(page, server, account, PASSWORD)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_create_an_instance_from_the_browser(page, server, account, service):  # noqa: F811
    log_in(page, server, account, PASSWORD)
    page.get_by_role("link", name="Product", exact=True).first.click()
    page.get_by_label("Instance name", exact=True).fill("browser-made")
    page.get_by_label("Capacity (pictures)").fill("200")
    page.get_by_role("button", name="Create instance").click()
    try:
        expect(page.get_by_role("heading", name="browser-made")).to_be_visible()
        expect(page.locator("main")).to_contain_text("200 pictures")
        assert service.describe_instance("browser-made").service_type == "product"
    finally:
        service.delete_instance("browser-made")


def test_the_login_form_is_keyboard_reachable(page, server, account):  # noqa: F811
    page.goto(f"http://{server}/login")
    page.wait_for_function("document.activeElement && document.activeElement.id === 'name'")  # autofocus
    page.keyboard.type(account)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


@pytest.fixture
def stocked(service, make_instance):
    from tests.pictures import encode, sample_photos

    photos = sample_photos()
    made = make_instance("generic")
    for product, photo, value in [("rocket", "rocket", 1), ("rocket-2", "rocket", 5), ("coffee", "coffee", 5),
                                  ("cat", "chelsea", 5)]:
        service.add_image(made.name, product, "a.png", encode(photos[photo]),
                          attributes=Attributes(int_attr=value))
    return made.name, photos


def test_search_by_upload_with_a_dragged_region_and_a_filter(page, server, account, stocked, tmp_path):  # noqa: F811
    import numpy as np

    from tests.pictures import encode

    name, photos = stocked
    left, right = photos["rocket"], photos["coffee"]
    height = min(left.shape[0], right.shape[0])
    side_by_side = np.concatenate([left[:height], right[:height]], axis=1)  # the rocket left, the cup right
    query = tmp_path / "query.png"
    query.write_bytes(encode(side_by_side))
    log_in(page, server, account, PASSWORD)
    page.goto(f"http://{server}/instances/{name}/search")
    page.get_by_label("Picture", exact=True).set_input_files(str(query))
    preview = page.get_by_alt_text("The picture to search with")
    expect(preview).to_be_visible()
    box = preview.bounding_box()
    share = left.shape[1] / side_by_side.shape[1]
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * share * 0.5, box["y"] + box["height"] * 0.5, steps=5)
    page.mouse.move(box["x"] + box["width"] * share - 5, box["y"] + box["height"] - 5, steps=5)
    page.mouse.up()
    expect(page.get_by_label("Custom region")).to_be_checked()
    assert page.get_by_label("Region (x1,x2,y1,y2 in pixels)").input_value().count(",") == 3
    page.get_by_label("Filter").fill("int_attr >= 5")
    page.get_by_role("button", name="Search").click()
    first = page.locator(".grid .match").first
    expect(first).to_contain_text("rocket-2")  # the rocket, and not the filtered-out one
    expect(page.locator(".grid")).not_to_contain_text("rocket a.png")
    expect(page.get_by_alt_text("The picture searched with")).to_be_visible()
    expect(page.locator(".stage .box.main")).to_have_count(1)
    page.get_by_text("The API's response").click()
    expect(page.locator("pre.raw")).to_contain_text('"Auctions"')
    assert page.get_by_alt_text("rocket-2 / a.png").evaluate("img => img.naturalWidth") > 0  # its thumbnail
