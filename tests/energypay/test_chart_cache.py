"""The dashboard's chart partial is cached, and never shows money older than the ledger.

Every write to a household's hourly ledger raises its ``usage_version`` in the same transaction
(meters/usage.py); the cache key carries it, the tariff's revision, the view, today and the hour
(meters/charts.py, ``cache_key``). Each test fetches the chart, writes through the real path (a meter's
POST, staff accepting a held reading, a price import, a failed payment's reopened lines, a new tariff
version), and fetches again: the second answer must show the write.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from meters.ingest import accept_held
from meters.models import HeldReading, HourlyUsage, Tariff, TariffVersion
from meters.price_import import import_prices
from meters.usage import reopen_lines
from tests.meters.ingestkit import accepted

NOW = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # Sunday 12:00 in Madrid (UTC+1)
URL = reverse("dashboard")
HTMX = {"HTTP_HX_REQUEST": "true"}

pytestmark = pytest.mark.time_machine(NOW, tick=False)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def at(moment: datetime, kwh: str) -> dict:
    return {"timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "energy_kwh": kwh}


def chart(client: Client, query: str = "") -> dict:
    """The partial's chart data, its total line and its HTML."""
    response = client.get(f"{URL}?{query}", **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    data = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html).group(1))
    total = re.search(r'<p class="muted" id="chart-total">\s*(.*?)\s*</p>', html, re.S).group(1)
    return {"data": data, "total": " ".join(total.split()), "html": html}


def bar(view: dict, label: str) -> str | None:
    return view["data"]["values"][view["data"]["labels"].index(label)]


@pytest.fixture
def meter(client, make_meter, household):
    client.force_login(household.user)
    meter, token = make_meter(household)
    meter.token = token
    return meter


def post(meter, *readings: dict) -> None:
    assert accepted(Client(), meter.token, list(readings))["accepted"] == len(readings)


def version(household) -> int:
    household.refresh_from_db()
    return household.usage_version


# --- A cache hit --------------------------------------------------------------------------------------


def test_a_second_fetch_without_a_write_is_a_cache_hit_costing_only_the_household_floor(client, meter):
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    first = chart(client)
    with CaptureQueriesContext(connection) as captured:
        second = chart(client)
    assert second["html"] == first["html"]
    # The session with its user, household and tariff, in one query: nothing of the chart's own.
    assert len(captured) == 1, [query["sql"] for query in captured.captured_queries]
    assert not any("meters_hourlyusage" in query["sql"] for query in captured.captured_queries)


def test_each_view_is_cached_apart(client, meter):
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    assert chart(client)["data"]["unit"] == "eur"
    assert chart(client, "unit=kwh")["data"]["unit"] == "kwh"
    assert chart(client, "range=week")["data"]["range"] == "week"
    assert bar(chart(client, "unit=kwh"), "10:00") == "4.000000"
    assert bar(chart(client), "10:00") == "1.000000"


def test_another_household_never_gets_this_households_chart(client, meter, other_client):
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    assert chart(client)["total"].startswith("€1.00")
    assert chart(other_client)["total"].startswith("€0.00")


# --- Every write shows in the next fetch ------------------------------------------------------------


def test_a_reading_in_the_open_hour_shows_in_the_next_fetch(client, meter):
    post(meter, at(utc(2026, 11, 22, 10), "100"), at(utc(2026, 11, 22, 10, 15), "101"))
    assert bar(chart(client), "11:00") == "0.250000"
    before = version(meter.household)
    post(meter, at(utc(2026, 11, 22, 10, 30), "103"))  # the common case: one in-order reading, one line updated
    assert version(meter.household) > before
    assert bar(chart(client), "11:00") == "0.750000"


@pytest.mark.django_db(transaction=True)  # outside a transaction, as requests run: statements prepared on PostgreSQL
def test_each_request_reads_the_version_afresh_with_its_session(client, meter, settings):
    """The household (and its usage version) comes with the session's own query, prepared or not: never kept."""
    settings.ALARM_USAGE_WINDOW_SECONDS = 0  # alarm evaluation queued at each commit: no timer outlives the test
    post(meter, at(utc(2026, 11, 22, 10), "100"), at(utc(2026, 11, 22, 10, 15), "101"))
    for minute, register, eur in ((30, "103", "0.750000"), (40, "104", "1.000000"), (50, "105", "1.250000")):
        assert bar(chart(client), "11:00") != eur  # cached now
        post(meter, at(utc(2026, 11, 22, 10, minute), register))
        assert bar(chart(client), "11:00") == eur


def test_a_reading_that_opens_a_new_hour_shows_in_the_next_fetch(client, meter):
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    assert chart(client)["total"].startswith("€1.00")
    post(meter, at(utc(2026, 11, 22, 11), "108"))
    assert chart(client)["total"].startswith("€2.00")


def test_a_late_reading_for_a_settled_hour_shows_its_adjustment_in_the_next_fetch(client, meter):
    post(meter, at(utc(2026, 11, 22, 8, 30), "100"), at(utc(2026, 11, 22, 9, 30), "104"))
    HourlyUsage.objects.filter(household=meter.household).update(settled_at=NOW)  # the 09:05 and 10:05 runs
    view = chart(client, "unit=kwh")
    assert (bar(view, "09:00"), bar(view, "10:00")) == ("2.000000", "2.000000")
    # The register stood at 103 at 09:00: three of the four kWh were the earlier hour's.
    post(meter, at(utc(2026, 11, 22, 9), "103"))
    assert HourlyUsage.objects.filter(household=meter.household, seq=1).count() == 2  # the adjustments
    view = chart(client, "unit=kwh")
    assert (bar(view, "09:00"), bar(view, "10:00")) == ("3.000000", "1.000000")


def test_a_held_reading_staff_accept_shows_in_the_next_fetch(client, meter, staff_user):
    old = NOW - timedelta(days=8)  # beyond the billing window: held, not billed
    answer = accepted(Client(), meter.token, [at(old, "100"), at(old + timedelta(hours=1), "102")])
    assert answer["accepted"] == 0
    first, second = HeldReading.objects.order_by("timestamp")
    accept_held(first.pk, acting_user=staff_user, now=NOW)
    assert chart(client, "range=month")["total"].startswith("€0.00")
    accept_held(second.pk, acting_user=staff_user, now=NOW)
    assert chart(client, "range=month")["total"].startswith("€0.50")


def test_imported_prices_show_in_the_next_fetch(client, meter, household):
    dynamic = Tariff.objects.create(name="Dynamic")
    version_ = TariffVersion.objects.create(tariff=dynamic, valid_from=utc(2020, 1, 1), kind=TariffVersion.Kind.DYNAMIC)
    household.tariff = dynamic
    household.save()
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    view = chart(client)
    assert "price pending for 4" in view["total"]
    assert view["data"]["price"]["values"][view["data"]["labels"].index("11:00")] is None
    before = version(household)
    prices = "hour_start,rate_eur_per_kwh\n2026-11-22T09:00:00Z,0.30\n2026-11-22T10:00:00Z,0.40\n"
    result = import_prices(version_, prices)
    assert (result.errors, result.repriced_lines) == ([], 1)
    assert version(household) > before  # the re-priced line
    view = chart(client)
    assert view["total"].startswith("€1.20") and "pending" not in view["total"]
    assert view["data"]["price"]["values"][view["data"]["labels"].index("11:00")] == "0.400000"
    # A price for an hour nobody used re-prices nothing, but the day's price curve shows it: the
    # tariff's revision is in the key.
    assert import_prices(version_, "hour_start,rate_eur_per_kwh\n2026-11-22T12:00:00Z,0.50\n").repriced_lines == 0
    view = chart(client)
    assert view["data"]["price"]["values"][view["data"]["labels"].index("13:00")] == "0.500000"


def test_a_failed_payments_reopened_lines_raise_the_version_and_the_chart_stays_exact(client, meter):
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 9, 30), "102"))
    HourlyUsage.objects.filter(household=meter.household).update(settled_at=NOW)
    post(meter, at(utc(2026, 11, 22, 9, 45), "103"))  # an adjustment line beside the settled one
    assert chart(client)["total"].startswith("€0.75")
    before = version(meter.household)
    settled = HourlyUsage.objects.get(household=meter.household, seq=0)
    with transaction.atomic():
        reopen_lines([settled.pk])  # the refused payment's lines: merged with the adjustment
    assert version(meter.household) > before
    assert HourlyUsage.objects.get(household=meter.household).kwh == Decimal(3)
    assert chart(client)["total"].startswith("€0.75")


def test_a_new_tariff_version_shows_in_the_next_fetch(client, meter, flat_tariff):
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    assert chart(client)["data"]["price"] is None  # a flat tariff draws no price curve
    TariffVersion.objects.create(
        tariff=flat_tariff,
        valid_from=utc(2026, 11, 21, 23),  # today, 00:00 in Madrid
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[{"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 24, "rate": "0.30"}],
    )
    assert chart(client)["data"]["price"]["label"] == "Tariff price (EUR/kWh)"


def test_a_household_moved_to_another_tariff_sees_its_chart(client, meter, household):
    assert chart(client)["data"]["price"] is None
    tou = Tariff.objects.create(name="Time of use")
    TariffVersion.objects.create(
        tariff=tou,
        valid_from=utc(2020, 1, 1),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[{"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 24, "rate": "0.30"}],
    )
    household.tariff = tou
    household.save()
    assert chart(client)["data"]["price"]["label"] == "Tariff price (EUR/kWh)"


def test_saving_a_household_loaded_before_a_write_keeps_the_newer_version(meter, household):
    stale = type(household).objects.get(pk=household.pk)
    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    raised = version(household)
    stale.name = "Renamed in the admin"
    stale.save()  # as the admin's form does, with the version it loaded
    assert version(household) == raised


# --- The clock --------------------------------------------------------------------------------------


def test_the_next_hour_is_no_longer_to_come(client, meter):
    assert bar(chart(client), "13:00") is None  # 12:00 UTC has not begun
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        assert bar(chart(client), "13:00") == "0"


def test_local_midnight_starts_a_new_today(client, meter):
    assert chart(client)["data"]["labels"][0] == "00:00"
    title = re.compile(r'<h2 id="chart-title">(.*?)</h2>')
    assert title.search(chart(client)["html"]).group(1) == "Sunday 22 November 2026"
    with time_machine.travel(utc(2026, 11, 22, 23), tick=False):  # Monday 00:00 in Madrid
        assert title.search(chart(client)["html"]).group(1) == "Monday 23 November 2026"


# --- The cache is an accelerator ----------------------------------------------------------------------


def test_a_cache_that_fails_costs_speed_never_the_chart(client, meter, monkeypatch):
    from django.core.cache import caches

    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    post(meter, at(utc(2026, 11, 22, 9), "100"), at(utc(2026, 11, 22, 10), "104"))
    backend = type(caches["default"])
    monkeypatch.setattr(backend, "get", down)
    monkeypatch.setattr(backend, "set", down)
    assert chart(client)["total"].startswith("€1.00")
