"""htmx in a real browser when things go wrong: a server error, no network, an expired session, back/forward.

Uses tests/e2e/conftest.py's page (the demo data, Chart.js answered locally).
"""

from __future__ import annotations

import re

from tests.e2e.conftest import log_in


def test_a_server_error_or_no_network_is_said_in_the_panel_with_a_retry_that_works(page):
    log_in(page)
    failing = {"mode": "500"}

    def answer(route):
        if route.request.headers.get("hx-request") and failing["mode"] == "500":
            route.fulfill(status=500, body="boom")
        elif route.request.headers.get("hx-request") and failing["mode"] == "offline":
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route("**/?range=week*", answer)
    page.click("#chart a[data-range=week]")
    page.wait_for_selector("#chart .htmx-error >> text=could not be updated (error 500)")
    assert page.locator("#chart a[data-range=day]").get_attribute("aria-current") == "true"  # nothing swapped

    failing["mode"] = "offline"
    page.click("#chart .htmx-error button")
    page.wait_for_selector("#chart .htmx-error >> text=No connection")

    failing["mode"] = "ok"
    page.click("#chart .htmx-error button")
    page.wait_for_selector("#chart a[data-range=week][aria-current=true]")
    assert page.locator(".htmx-error").count() == 0


def test_an_expired_session_takes_the_whole_page_to_the_login_and_back(page):
    log_in(page)
    page.click("#chart a[data-range=week]")  # pushes /?range=week...: the page the login must return to
    page.wait_for_selector("#chart a[data-range=week][aria-current=true]")
    # The chart brings a comparison panel that loads itself; on a slow machine that request could
    # find the session gone and take the page to the login before the click below.
    page.wait_for_selector("section#comparison")
    shown = page.url
    page.context.clear_cookies()  # the session is gone, the page still shows
    page.click("#chart a[data-range=month]")
    page.wait_for_url(re.compile(r".*/login/\?next=.*range%3Dweek.*"))
    assert page.locator("#chart").count() == 0 and page.locator("h1").inner_text() == "Log in"
    page.fill("input[name=username]", "demo@example.com")
    page.fill("input[name=password]", "demo")
    page.click("main button[type=submit]")
    page.wait_for_url(shown)  # back to the page it was on


def test_back_and_forward_redraw_the_chart_without_errors(page):
    log_in(page)
    page.wait_for_selector("#usage-chart")
    for range_ in ("week", "month", "year"):
        page.click(f"#chart a[data-range={range_}]")
        page.wait_for_selector(f"#chart a[data-range={range_}][aria-current=true]")
    for expected in ("month", "week", "day"):
        page.go_back()
        page.wait_for_selector(f"#chart a[data-range={expected}][aria-current=true]")
        page.wait_for_function("() => !document.querySelector('.chart-box').hidden")
        assert page.evaluate("() => Boolean(window.Chart.getChart(document.getElementById('usage-chart')))")
    page.go_forward()
    page.wait_for_selector("#chart a[data-range=week][aria-current=true]")
    assert page.evaluate("() => Boolean(window.Chart.getChart(document.getElementById('usage-chart')))")
    # The page fixture fails the test on any JavaScript error ("Canvas is already in use" included).
