"""The console in Chromium, as a person uses it: a keyboard, labels, buttons (tests/browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from imagesearch_pg.attributes import Attributes
from tests.browser import browser, page  # noqa: F401 (fixtures)
from tests.test_console import PASSWORD, account  # noqa: F401 (fixture)

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


def test_another_site_cannot_frame_the_console(page, server, account):  # noqa: F811
    log_in(page, server, account, PASSWORD)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for path in ("/login", "/", "/categories", "/no/such/page"):
        # A page of another origin framing the console beside a frame of its own, which does show.
        page.set_content(f'<iframe name="console" src="http://{server}{path}"></iframe>'
                         '<iframe name="own" srcdoc="<h1>its own</h1>"></iframe>')
        expect(page.frame_locator("iframe[name=own]").get_by_role("heading", name="its own")).to_be_visible()
        framed = page.frame(name="console")
        assert framed is not None and framed.locator("header.top, form").count() == 0, path  # no console in it


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


def test_add_pictures_with_the_form(page, server, account, make_instance, service, tmp_path):  # noqa: F811
    from tests.pictures import encode, sample_photos

    made = make_instance("product")
    photo = tmp_path / "cup.png"
    photo.write_bytes(encode(sample_photos()["coffee"]))
    log_in(page, server, account, PASSWORD)
    page.goto(f"http://{server}/instances/{made.name}/add")
    page.get_by_label("ProductId").fill("cup")
    page.get_by_label("PicName").fill("cup.png")
    page.get_by_label("Picture file").set_input_files(str(photo))
    page.get_by_label("IntAttr", exact=True).fill("12")
    page.get_by_label("StrAttr", exact=True).fill("red")
    page.get_by_label("Category").select_option(label="Bottle")
    page.get_by_role("button", name="Add picture").click()
    expect(page.get_by_role("status")).to_contain_text("cup / cup.png was added")
    expect(page.locator("pre.raw")).to_contain_text('"CategoryId": 8')
    stored = service.check_image_exists(made.name, "cup", "cup.png")
    assert stored is not None and stored.attributes.int_attr == 12 and stored.attributes.str_attr == "red"
    # a bad value is named beside its field, and nothing is added
    page.get_by_label("ProductId").fill("cup2")
    page.get_by_label("IntAttr", exact=True).fill("99999999999")
    page.get_by_label("Picture file").set_input_files(str(photo))
    page.get_by_role("button", name="Add picture").click()
    expect(page.locator("#int_attr-error")).to_contain_text("IntAttr must be a 32-bit signed integer")
    assert service.check_image_exists(made.name, "cup2", "cup.png") is None


def test_a_batch_task_from_a_local_folder_then_an_export(page, server, account, make_instance, service,
                                                        tmp_path):  # noqa: F811
    from tests.batch_folders import picture, wait_for, worker_loop, write_folder

    made = make_instance()
    location = f"console-{made.name}"
    service.storage.add(location, str(tmp_path))
    lines = [{"OperationType": "ADD", "ProductId": f"p{i}", "PicName": f"{i}.jpg"} for i in range(3)]
    lines.append({"OperationType": "ADD", "ProductId": "bad", "PicName": "missing.jpg"})
    path = write_folder(tmp_path, lines, {f"{i}.jpg": picture(i) for i in range(3)})
    try:
        with worker_loop(service):
            log_in(page, server, account, PASSWORD)
            page.goto(f"http://{server}/instances/{made.name}/batch")
            page.get_by_label("Storage location").select_option(location)
            page.get_by_label("Path (the folder holding increment.meta)").fill(path)
            page.get_by_role("button", name="Start batch task").click()
            expect(page.get_by_role("status")).to_contain_text("was queued")
            wait_for(lambda: service.describe_instance(made.name).picture_count == 3, what="the batch")
            wait_for(lambda: service.tasks.list_imports(made.name)[1][0].state == "partially_failed", what="its end")
            page.get_by_role("link", name="Refresh").click()
            row = page.locator("table.tasks tbody tr").first
            expect(row.locator(".status")).to_have_text("PARTIALLY_FAILED")
            expect(row).to_contain_text("4 / 4 lines, 1 failed")
            with page.expect_download() as report:
                row.get_by_role("link", name="Error report").click()
            assert b"missing.jpg" in Path(report.value.path()).read_bytes()
            row.get_by_role("button", name="Resubmit").click()
            expect(page.get_by_role("status")).to_contain_text("submitted again")

            page.get_by_role("link", name="Metadata export").click()
            page.get_by_role("button", name="Start export").click()
            expect(page.get_by_role("status")).to_contain_text("was queued")
            wait_for(lambda: service.tasks.list_exports(made.name)[1][0].state == "succeeded", what="the export")
            page.get_by_role("link", name="Refresh").click()
            with page.expect_download() as export:
                page.get_by_role("link", name="Download").first.click()
            exported = Path(export.value.path()).read_text().splitlines()
            assert sorted(json.loads(line)["ProductId"] for line in exported) == ["p0", "p1", "p2"]
    finally:
        service.storage.remove(location)


def test_the_duplicates_view_and_clearing_an_instance(page, server, account, stocked, service):  # noqa: F811
    name, _ = stocked
    log_in(page, server, account, PASSWORD)
    page.goto(f"http://{server}/instances/{name}/duplicates")
    page.get_by_label("Lowest score (0-1)").fill("0.98")
    page.get_by_role("button", name="Find pairs").click()
    pair = page.locator(".pair").first
    expect(page.locator(".pair")).to_have_count(1)  # the two rocket pictures
    expect(pair.get_by_alt_text("rocket / a.png")).to_be_visible()
    expect(pair.get_by_alt_text("rocket-2 / a.png")).to_be_visible()

    page.get_by_role("link", name="Overview", exact=True).last.click()
    clear = page.get_by_role("button", name="Clear all pictures")
    expect(clear).to_be_disabled()  # until the name is typed
    page.get_by_label(f"Type the instance's name, {name}, to confirm").fill("wrong")
    expect(clear).to_be_disabled()
    page.get_by_label(f"Type the instance's name, {name}, to confirm").fill(name)
    clear.click()
    expect(page.get_by_role("status")).to_contain_text(f"All pictures of {name} were deleted")
    assert service.describe_instance(name).picture_count == 0


def test_pages_fit_a_phone(page, server, account, stocked):  # noqa: F811
    name, _ = stocked
    page.set_viewport_size({"width": 360, "height": 740})
    log_in(page, server, account, PASSWORD)
    for path in ("/", "/types/generic", f"/instances/{name}", f"/instances/{name}/search", f"/instances/{name}/add",
                 f"/instances/{name}/batch", f"/instances/{name}/export", f"/instances/{name}/duplicates",
                 "/categories"):
        page.goto(f"http://{server}{path}")
        # wide tables scroll inside their own box; the page itself never scrolls sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, path


def test_every_field_has_a_label(page, server, account, stocked):  # noqa: F811
    name, _ = stocked
    log_in(page, server, account, PASSWORD)
    for path in ("/types/product", f"/instances/{name}", f"/instances/{name}/search", f"/instances/{name}/add",
                 f"/instances/{name}/batch", f"/instances/{name}/duplicates"):
        page.goto(f"http://{server}{path}")
        unlabelled = page.evaluate("""() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter(e => !(e.labels && e.labels.length)).map(e => e.name || e.id)""")
        assert unlabelled == [], (path, unlabelled)
