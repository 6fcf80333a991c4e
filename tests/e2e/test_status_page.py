"""/admin/status/ in Chromium: staff on a phone read it without scrolling sideways."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import screenshot
from tests.e2e.test_csp import current_totp


def staff_log_in(page) -> None:
    page.goto(page.base_url + "/admin/login/")
    page.fill("input[name=username]", "staff@example.com")
    page.fill("input[name=password]", "demo")
    page.click("input[type=submit]")
    page.fill("input[name=code]", current_totp("staff@example.com"))  # the admin's second factor
    page.click("input[type=submit][value=Verify]")
    page.wait_for_url(page.base_url + "/admin/")


@pytest.mark.parametrize("width", [360, 1280])
def test_the_status_page_fits_the_screen_and_every_section_shows(page, width):
    page.set_viewport_size({"width": width, "height": 800})
    staff_log_in(page)
    page.goto(page.base_url + "/admin/status/")
    for section in ("checks", "ingest", "rejections", "meters", "settlements", "arrears", "webhooks"):
        assert page.locator(f"#status-{section}").is_visible(), section
    screenshot(page, f"admin-status-{width}")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= width
