"""The comparison panel in Chromium: loaded into the chart panel, in English and in Spanish, at a phone's width.

The household is on a peak-and-valley tariff and the page shows last month (a complete month, so
nothing depends on the hour the test runs): two evenings of 2 kWh at the peak price each, against
one such evening the month before, and nothing a year before. The hint moves each evening's 2 kWh
from EUR 0.30 to EUR 0.10: 2 x 0.20 x 2 days = EUR 0.80.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from energypay.accounts.models import User
from lib.periods import add_months, first_of_month, local_date, local_midnight
from meters.models import HourlyUsage, Household, Meter, Tariff, TariffVersion

NBSP = "\N{NO-BREAK SPACE}"
TZ = "Europe/Madrid"


@pytest.fixture
def household(transactional_db) -> Household:
    tariff = Tariff.objects.create(name="Peak and valley")
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 8, "rate": "0.10"},
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 8, "end": 24, "rate": "0.30"},
        ],
    )
    user = User.objects.create_user("compara@example.com", "a-long-password-1")
    return Household.objects.create(user=user, name="Casa que compara", timezone=TZ, tariff=tariff)


def evening(household: Household, meter: Meter, day, seq: int) -> None:
    hour = local_midnight(day, TZ) + timedelta(hours=20)  # 20:00 local: the peak
    HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=seq,
        kwh=Decimal("2"),
        rate=Decimal("0.30"),
        cost_eur=Decimal("0.60"),
        settled_at=hour + timedelta(hours=1),
    )


@pytest.fixture
def last_month(household):
    meter = Meter.objects.create(serial="CMP-E2E", household=household)
    shown = add_months(first_of_month(local_date(timezone.now(), TZ)), -1)
    evening(household, meter, shown, 0)
    evening(household, meter, shown + timedelta(days=1), 0)
    evening(household, meter, add_months(shown, -1), 0)
    return shown


@pytest.fixture
def context(browser, live_server, household):
    context = browser.new_context(locale="en-GB", viewport={"width": 360, "height": 800})
    yield context
    connections.close_all()  # Playwright's greenlet has a database connection of its own
    context.close()


def log_in(tab, live_server) -> None:
    tab.goto(live_server.url + "/login/")
    tab.fill("input[name=username]", "compara@example.com")
    tab.fill("input[name=password]", "a-long-password-1")
    tab.click("button[type=submit]")
    tab.wait_for_url(live_server.url + "/")


def test_the_panel_compares_last_month_in_english_and_spanish_at_360_px(context, live_server, household, last_month):
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    log_in(tab, live_server)
    folder = settings.VAR_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)

    tab.goto(f"{live_server.url}/?range=month&date={last_month.isoformat()}")
    changes = tab.locator("#comparison-changes li")
    changes.first.wait_for()  # loaded by the chart panel's own htmx request
    previous, last_year = changes.nth(0).inner_text(), changes.nth(1).inner_text()
    assert re.fullmatch(r"[+\N{MINUS SIGN}]?\d+% vs the previous month", previous), previous
    assert last_year == "No data for the same month last year."
    assert tab.locator("#comparison-hint").inner_text() == (
        "Moving what you used in your 3 most expensive hours of each day to that day's 3 cheapest hours "
        "would have saved €0.80 in this period."
    )
    assert tab.evaluate("document.documentElement.scrollWidth") <= 360
    tab.screenshot(path=str(folder / "comparison-en-phone.png"), full_page=True)
    tab.set_viewport_size({"width": 1280, "height": 900})
    tab.locator("#comparison").screenshot(path=str(folder / "comparison-en-desktop.png"))
    tab.set_viewport_size({"width": 360, "height": 800})

    # The range switch swaps the chart, and the chart brings the comparison of its new period.
    tab.locator("#chart [data-range=year]").click()
    tab.wait_for_selector("#comparison-changes li:has-text('the previous year')")

    tab.locator("form.language button[value=es]").click()
    tab.wait_for_selector("html[lang=es]")
    tab.goto(f"{live_server.url}/?range=month&date={last_month.isoformat()}")
    changes.first.wait_for()
    assert re.fullmatch(
        rf"[+\N{{MINUS SIGN}}]?\d+{NBSP}% comparado con el mes anterior", changes.nth(0).inner_text()
    ), changes.nth(0).inner_text()
    assert changes.nth(1).inner_text() == "Sin datos para el mismo mes del año pasado."
    assert f"0,80{NBSP}€" in tab.locator("#comparison-hint").inner_text()
    assert (
        "El dinero incluye la energía, el término fijo y los impuestos" in tab.locator("#comparison-notes").inner_text()
    )
    assert tab.evaluate("document.documentElement.scrollWidth") <= 360
    tab.screenshot(path=str(folder / "comparison-es-phone.png"), full_page=True)
    # Without JavaScript's panel: the same comparison as a page of its own.
    tab.goto(f"{live_server.url}/comparison?range=month&date={last_month.isoformat()}")
    assert tab.locator("h1").inner_text() == "Comparado con periodos anteriores"
    assert tab.evaluate("document.documentElement.scrollWidth") <= 360
    tab.screenshot(path=str(folder / "comparison-page-es-phone.png"), full_page=True)
    assert errors == []
