"""The console's screenshots in docs/console/, taken in Chromium from a real service with sample pictures.

    IMAGESEARCH_HOME=$(mktemp -d) .venv/bin/python docs/console/screenshots.py

Every page at 1280 x 800, and the Search tab at 360 px wide. Needs the test extras (Playwright,
scikit-image's sample photos) and Debian's chromium (tests/install-test-tools.sh).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
from werkzeug.serving import make_server

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flask_app import create_app  # noqa: E402
from imagesearch_pg.attributes import Attributes  # noqa: E402
from imagesearch_pg.config import Settings  # noqa: E402
from imagesearch_pg.service import ImageSearch  # noqa: E402
from tests.batch_folders import picture, wait_for, worker_loop, write_folder  # noqa: E402
from tests.browser import CHROMIUM_ARGS, chromium_path  # noqa: E402
from tests.pictures import encode, sample_photos  # noqa: E402

OUT = Path(__file__).resolve().parent
USER, PASSWORD = "demo", "demo password 1"
INSTANCE = "shop"


def stock(service: ImageSearch, folder: Path) -> Path:
    """A product instance with the sample photos (two of them twice), a batch and an export; the query."""
    if USER not in {u.name for u in service.console_users.listing()}:
        service.console_users.create(USER, PASSWORD)
    if INSTANCE in {i.name for i in service.list_instances()}:
        service.delete_instance(INSTANCE)
    service.create_instance(INSTANCE, "product", tags={"team": "web"})
    photos = sample_photos()
    for at, (key, photo) in enumerate(photos.items()):
        service.add_image(INSTANCE, key, f"{key}.png", encode(photo),
                          attributes=Attributes(int_attr=at * 10, str_attr="blue" if at % 2 else "red"))
    service.add_image(INSTANCE, "coffee-again", "coffee.png", encode(photos["coffee"]))
    service.add_image(INSTANCE, "rocket-again", "rocket.png", encode(photos["rocket"]))
    if "samples" not in {loc.name for loc in service.storage.listing()}:
        service.storage.add("samples", str(folder))
    lines = [{"OperationType": "ADD", "ProductId": f"noise-{i}", "PicName": f"{i}.jpg"} for i in range(5)]
    lines.append({"OperationType": "ADD", "ProductId": "missing", "PicName": "missing.jpg"})
    path = write_folder(folder, lines, {f"{i}.jpg": picture(i) for i in range(5)})
    with worker_loop(service):
        service.tasks.submit_import(INSTANCE, "samples", path)
        service.tasks.submit_export(INSTANCE)
        wait_for(lambda: service.tasks.list_exports(INSTANCE)[1][0].state == "succeeded", what="the export")
        wait_for(lambda: service.tasks.list_imports(INSTANCE)[1][0].state != "queued"
                 and service.tasks.list_imports(INSTANCE)[1][0].finished_at, what="the batch")
    left, right = photos["rocket"], photos["coffee"]
    height = min(left.shape[0], right.shape[0])
    query = folder / "query.png"
    query.write_bytes(encode(np.concatenate([left[:height], right[:height]], axis=1)))
    return query


def main() -> None:
    from playwright.sync_api import sync_playwright

    settings = Settings.from_env()
    service = ImageSearch.open(settings)
    folder = Path(tempfile.mkdtemp(prefix="console-shots-"))
    query = stock(service, folder)
    app = create_app({"SETTINGS": settings, "SERVICE": service})
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_port}"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/login")
            page.screenshot(path=str(OUT / "login.png"))
            page.get_by_label("User name").fill(USER)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_selector("h1:text('Overview')")
            shots = [("overview", "/"), ("instances", "/types/product"), ("instance", f"/instances/{INSTANCE}"),
                     ("add", f"/instances/{INSTANCE}/add"), ("batch", f"/instances/{INSTANCE}/batch"),
                     ("export", f"/instances/{INSTANCE}/export"),
                     ("duplicates", f"/instances/{INSTANCE}/duplicates?min_score=0.98"), ("categories", "/categories")]
            for name, path in shots:
                page.goto(base + path)
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)
            search(page, base, query, "search.png")
            phone = browser.new_page(viewport={"width": 360, "height": 740})
            phone.context.add_cookies(page.context.cookies())
            search(phone, base, query, "search-360.png")
            browser.close()
    finally:
        httpd.shutdown()
        service.close()
    print(f"screenshots in {OUT}")


def search(page, base: str, query: Path, name: str) -> None:
    page.goto(f"{base}/instances/{INSTANCE}/search")
    page.get_by_label("Picture", exact=True).set_input_files(str(query))
    preview = page.get_by_alt_text("The picture to search with")
    preview.wait_for()
    box = preview.bounding_box()
    page.mouse.move(box["x"] + 4, box["y"] + 4)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] - 4, steps=8)
    page.mouse.up()
    page.get_by_label("Filter").fill("int_attr >= 0")
    page.get_by_role("button", name="Search").click()
    page.wait_for_selector(".grid .match img")
    page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(img => { img.loading = 'eager'; })")
    page.wait_for_function("[...document.images].every(img => img.complete)")
    page.screenshot(path=str(OUT / name), full_page=True)


if __name__ == "__main__":
    main()
