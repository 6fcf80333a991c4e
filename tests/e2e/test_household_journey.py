"""A household in a real browser: log in, read the chart, switch it, unlock the community view, download a CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from payments import keys
from payments.models import CommunityPass, LedgerTransaction
from tests.e2e.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

# htmx swaps the canvas, so between the swap and the redraw there is briefly no chart: ask safely.
CHART = "(window.Chart && Chart.getChart('usage-chart'))"
CHART_LABELS = f"() => {CHART}.data.labels.length"
CHART_UNIT = f"() => {CHART}.data.datasets[0].label"
HTMX_IDLE = "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"


def _chart_drawn(page) -> None:
    page.wait_for_function(f"() => !!{CHART}")


def test_chart_switches_range_and_unit_without_a_page_load(page):
    log_in(page)
    page.goto(page.base_url + "/?range=day&unit=eur")
    _chart_drawn(page)
    assert page.evaluate(CHART_LABELS) in (23, 24, 25)
    # A full page load would wipe this marker; an htmx swap keeps it.
    page.evaluate("() => { window.__stillTheSamePage = true; }")

    page.click("[data-range=week]")
    page.wait_for_url("**/?*range=week*")
    page.wait_for_function(f"() => {CHART} && {CHART}.data.labels.length === 7")
    assert page.evaluate("() => window.__stillTheSamePage") is True

    euro_label = page.evaluate(CHART_UNIT)
    page.click("[data-unit=kwh]")
    page.wait_for_url("**/?*unit=kwh*")
    page.wait_for_function(f"() => {CHART} && {CHART}.data.datasets[0].label !== {euro_label!r}")
    assert "kWh" in page.evaluate(CHART_UNIT)
    assert page.evaluate("() => window.__stillTheSamePage") is True

    # The URL is the view: a reload (or a shared link) shows the same range and unit.
    page.reload()
    _chart_drawn(page)
    assert page.evaluate(CHART_LABELS) == 7
    assert "kWh" in page.evaluate(CHART_UNIT)
    assert page.evaluate("() => window.__stillTheSamePage") is None


def test_dashboard_screenshots_at_desktop_and_phone_width(page):
    log_in(page)
    page.goto(page.base_url + "/?range=week&unit=eur")
    _chart_drawn(page)
    assert page.locator("#cards").is_visible()
    screenshot(page, "dashboard-desktop")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    _chart_drawn(page)
    # Nothing wider than the phone: no sideways scrolling of the whole page.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    screenshot(page, "dashboard-phone")


def test_community_view_unlocks_once_even_when_clicked_twice(page):
    log_in(page)
    page.goto(page.base_url + "/community/")
    before = LedgerTransaction.objects.count()
    button = page.locator("#unlock-button")
    assert button.is_visible()
    button.dblclick()
    page.wait_for_selector("#community-table")
    page.wait_for_function("() => window.Chart && Chart.getChart('community-chart') !== undefined")
    assert page.locator("#pass-confirmation").is_visible()

    passes = CommunityPass.objects.filter(household__user__email="demo@example.com")
    assert passes.count() == 1
    paying = LedgerTransaction.objects.filter(txid=passes.get().txid)
    assert paying.count() == 1
    assert LedgerTransaction.objects.count() == before + 1
    assert keys.utility_address() in {o.address for o in paying.get().outputs.all()}
    screenshot(page, "community-unlocked")


def test_usage_csv_downloads_with_money_columns(page):
    log_in(page)
    page.goto(page.base_url + "/")
    with page.expect_download() as download_info:
        page.locator("#csv-form [type=submit]").click()
    download = download_info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    header = [column.lower() for column in rows[0]]
    for column in ("kwh", "rate", "eur", "satoshis", "txid", "state"):
        assert any(column in name for name in header), (column, header)
    assert len(rows) > 1


def test_settlements_page_shows_payments_with_state_badges(page):
    log_in(page)
    page.goto(page.base_url + "/payments/")
    badges = page.locator("#settlements .badge")
    assert badges.count() > 0
    assert badges.first.get_attribute("data-state") in {"signed", "broadcast", "seen", "confirmed"}
    page.locator("#settlements a[href*='/payments/']").first.click()
    page.wait_for_selector("text=satoshis")


def test_alarm_created_from_the_dashboard_without_leaving_it(page):
    from alarms.models import AlarmRule

    log_in(page)
    page.goto(page.base_url + "/")
    page.evaluate("() => { window.__stillTheSamePage = true; }")
    page.click("#new-alarm")
    page.wait_for_selector("#alarm-form select[name=kind]")
    # Choosing a kind re-renders the form (the threshold's unit follows the kind): type only after that.
    with page.expect_response("**/alarms/new**"):
        page.locator("#alarm-form select[name=kind]").select_option("daily_cost")
    page.wait_for_function(HTMX_IDLE)
    page.locator("#alarm-form input[name=threshold]").fill("-5")
    page.locator("#alarm-form button[type=submit]").click()
    page.wait_for_selector("#alarm-form >> text=cannot be negative")
    assert page.evaluate("() => window.__stillTheSamePage") is True
    assert not AlarmRule.objects.exists()  # a rejected form changes nothing

    page.locator("#alarm-form input[name=threshold]").fill("5")
    page.locator("#alarm-form button[type=submit]").click()
    page.wait_for_url("**/alarms/")
    rule = AlarmRule.objects.get()
    assert rule.household.user.email == "demo@example.com"
    assert rule.kind == "daily_cost" and str(rule.threshold) in {"5", "5.00", "5.000"}
    assert page.locator(f"text={rule.description}").first.is_visible()
