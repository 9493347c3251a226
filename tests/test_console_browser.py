"""The console in Chromium, as a person uses it: a keyboard, labels, buttons (tests/browser.py)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

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
