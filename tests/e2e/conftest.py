"""Browser tests: Playwright driving Debian's Chromium against a live Django server.

Needs /usr/bin/chromium (apt: chromium), a copy of the pinned Chart.js file (the machine has no
internet, so the CDN URL is answered from that copy; the page's integrity hash still has to match
it byte for byte) and the pinned axe-core engine (test_accessibility.py), both fetched with npm
(tests/e2e/assets.py). `.ci/run` installs what is missing and sets E2E_REQUIRED=1, so in CI a missing
piece fails instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from tests.e2e.assets import fetch_axe_core, fetch_chart_js

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).parent / "screenshots"
DEMO_LOGIN = ("demo@example.com", "demo")


def _missing(reason: str) -> None:
    if os.environ.get("E2E_REQUIRED"):
        pytest.fail(f"browser tests required (E2E_REQUIRED=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chart_js() -> Path:
    path = fetch_chart_js()
    if path is None:
        _missing("the Chart.js file could not be fetched with npm")
    return path


@pytest.fixture(scope="session")
def axe_core() -> str:
    path = fetch_axe_core()
    if path is None:
        _missing("the axe-core file could not be fetched with npm")
    return path.read_text()


@pytest.fixture(scope="module")
def browser():
    """Chromium for one test module.

    While Playwright is open its event loop runs in this thread, so Django sees an async context
    and refuses ORM calls; the tests' own ORM calls are synchronous and safe, so the guard is lifted
    for exactly that window. Module scope, not session: the other tests of the worker must run with
    the loop closed and the guard back (check --deploy rightly refuses the variable).
    """
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            yield chromium
            chromium.close()


@pytest.fixture
def demo_data(transactional_db):
    """The demo households (5, enough for the community buckets), with three days of history."""
    call_command("seed_demo", households=5, days=3, stdout=open(os.devnull, "w"))  # noqa: SIM115


def _serve_chart_js(route, chart_js: Path) -> None:
    route.fulfill(
        status=200,
        body=chart_js.read_bytes(),
        headers={"Content-Type": "application/javascript", "Access-Control-Allow-Origin": "*"},
    )


@pytest.fixture
def page(browser, live_server, chart_js, demo_data):
    """A fresh browser context (desktop size) whose CDN requests are answered locally."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.route(settings.CHART_JS_URL, lambda route: _serve_chart_js(route, chart_js))
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.base_url = live_server.url
    yield tab
    # ORM calls made while Playwright runs happen in its greenlet, on a connection of their own.
    connections.close_all()
    context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def log_in(page, email: str = DEMO_LOGIN[0], password: str = DEMO_LOGIN[1]) -> None:
    page.goto(page.base_url + "/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(page.base_url + "/")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
