"""A real browser for the console's tests: Playwright for Python driving Debian's chromium.

Without a chromium the browser tests are skipped, except under CI=true, where they fail (.ci/run installs
the browser when it is missing). A failing test leaves a screenshot in test-screenshots/ (named after it).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]  # root, no GPU, small /dev/shm


def chromium_path() -> str | None:
    return os.environ.get("IMAGESEARCH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    # Per module: while Playwright's sync API runs, its event loop is the thread's, and asyncio.run()
    # elsewhere in the suite (tests/test_front.py) would refuse to start one.
    path = chromium_path()
    if path is None:
        message = "no chromium to drive: apt-get install chromium (.ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    opened = context.new_page()
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(exist_ok=True)
        target = SCREENSHOTS / (re.sub(r"[^\w.-]+", "_", request.node.nodeid) + ".png")
        opened.screenshot(path=str(target), full_page=True)
        print(f"screenshot of the failure: {target}")
    context.close()
