"""/admin/status/: staff see the health checks, ingest rates, rejections, silent meters, settlements, arrears."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from energypay import health, status
from energypay.ops.models import RejectionCount
from meters.ingest import ingest_readings
from meters.models import Meter, Reading
from meters.schema import parse_items
from payments.models import Settlement
from tests.energypay.opskit import NOW, open_line, quote, settlement, tick

URL = "/admin/status/"
HOUR = NOW.replace(minute=0)


@pytest.fixture(autouse=True)
def _frozen_and_fresh():
    health.memo.clear()
    with time_machine.travel(NOW, tick=False):
        yield
    health.memo.clear()


def text(response) -> str:
    """The page's text with tags and runs of whitespace collapsed, for asserting on what staff read."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def section(response, name: str) -> str:
    html = response.content.decode()
    start = html.index(f'id="status-{name}"')
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[start : html.index("</table>", start)]))


# --- Who may see it ---------------------------------------------------------------------------


def test_anonymous_visitors_get_the_admin_login(client, db):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"/admin/login/?next={URL}"


def test_a_household_gets_the_admin_login_not_the_page(household_client):
    response = household_client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_staff_find_it_from_the_admin_index(staff_client):
    index = staff_client.get("/admin/").content.decode()
    assert f'href="{URL}"' in index
    response = staff_client.get(URL)
    assert response.status_code == 200
    assert "System status" in text(response)


# --- What it shows ----------------------------------------------------------------------------


def test_health_checks_are_shown_with_what_failed(staff_client, db):
    tick(NOW - timedelta(minutes=10))  # beat stopped
    quote(NOW)
    response = staff_client.get(URL)
    assert "Health: FAILING" in text(response)
    assert "beat fail last tick: 2026-11-22T10:20:00+00:00, age seconds: 600" in section(response, "checks")
    assert "price ok" in section(response, "checks")


def test_ingest_rates_count_readings_by_when_they_arrived(staff_client, meter_and_token):
    meter, _ = meter_and_token
    arrivals = [2, 4, 4, 30, 59, 61, 600]  # minutes ago
    Reading.objects.bulk_create(
        Reading(
            meter=meter,
            household_id=meter.household_id,
            timestamp=NOW - timedelta(days=1, minutes=i),
            energy_kwh=i,
            received_at=NOW - timedelta(minutes=n),
        )
        for i, n in enumerate(arrivals)
    )
    shown = section(staff_client.get(URL), "ingest")
    assert "Last 5 minutes 3 0.01" in shown  # 3 / 300 s
    assert "Last hour 5 0.0" in shown  # 5 / 3600 s, to 2 places


def test_ingest_rates_count_only_what_the_api_received_not_a_seeded_history(staff_client, client, meter_and_token):
    meter, token = meter_and_token
    history = [(NOW - timedelta(minutes=m), Decimal(100 - m) / 10) for m in (50, 40, 30, 20)]
    items = [{"timestamp": at.isoformat(), "energy_kwh": str(kwh)} for at, kwh in history]
    ingest_readings(meter.pk, parse_items(items)[0], NOW)  # what seed_demo and staff do: trusted, no API
    assert Reading.objects.filter(meter=meter).count() == 4
    assert "Last hour 0 0.0" in section(staff_client.get(URL), "ingest")

    answer = client.post(
        "/api/v1/readings",
        {"timestamp": (NOW - timedelta(minutes=5)).isoformat(), "energy_kwh": "10"},
        content_type="application/json",
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    shown = section(staff_client.get(URL), "ingest")
    assert "Last 5 minutes 1 0.0" in shown
    assert "Last hour 1 0.0" in shown


def test_rejections_are_shown_by_reason_for_this_hour_and_the_day(staff_client, db):
    RejectionCount.add(HOUR, {"future": 4, "malformed": 1})
    RejectionCount.add(HOUR - timedelta(hours=5), {"future": 10, "conflict": 2})
    RejectionCount.add(HOUR - timedelta(hours=24), {"future": 1000})  # before the window
    shown = section(staff_client.get(URL), "rejections")
    assert "Since 10:00 UTC Since 2026-11-21 11:00 UTC" in shown
    assert "timestamp in the future 4 14" in shown
    assert "conflicts with a stored reading 0 2" in shown
    assert "malformed item 1 1" in shown
    assert "negative register 0 0" in shown
    assert "Total 5 17" in shown


def test_silent_meters_are_counted_by_how_long_they_have_been_quiet(staff_client, make_meter):
    for minutes in (10, 120, 3000, None):
        meter, _ = make_meter()
        seen = None if minutes is None else NOW - timedelta(minutes=minutes)
        Meter.objects.filter(pk=meter.pk).update(last_seen_at=seen)
    retired, _ = make_meter()
    Meter.objects.filter(pk=retired.pk).update(is_active=False)
    shown = section(staff_client.get(URL), "meters")
    assert "Active 4" in shown
    assert "Silent for an hour or more (or never heard from) 3" in shown
    assert "Silent for a day or more (or never heard from) 2" in shown


def test_settlements_are_counted_by_state(staff_client, household):
    with time_machine.travel(NOW - timedelta(hours=3), tick=False):
        settlement(household, Settlement.State.CONFIRMED, eur="1.00")
        settlement(household, Settlement.State.SEEN, eur="0.25")  # still pending, 3 hours on
    with time_machine.travel(NOW - timedelta(minutes=20), tick=False):
        settlement(household, Settlement.State.CONFIRMED, eur="0.50")
        settlement(household, Settlement.State.SIGNED, eur="0.10")
    with time_machine.travel(NOW - timedelta(days=2), tick=False):
        settlement(household, Settlement.State.CONFIRMED, eur="9.00")  # older than the day
    response = staff_client.get(URL)
    page = response.content.decode()

    def row(state: str) -> str:
        start = page.index(f'id="settlements-{state}"')
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page[start : page.index("</tr>", start)])).strip()

    assert row("confirmed").endswith("Confirmed 1 2 €1.50")
    assert row("seen").endswith("Seen on the network 0 1 €0.25 1 (since 2026-11-22 07:30 UTC)")
    assert row("signed").endswith("Signed 1 1 €0.10 1 (since 2026-11-22 10:10 UTC)")
    assert row("broadcast").endswith("Broadcast 0 0 €0.00 0")


def test_households_in_arrears_are_listed_largest_debt_first(staff_client, make_household):
    small, large, paying = make_household(), make_household(), make_household()
    open_line(small, HOUR - timedelta(hours=3), "0.25")
    open_line(large, HOUR - timedelta(hours=5), "1.00")
    open_line(large, HOUR - timedelta(hours=4), "0.50")
    open_line(paying, HOUR - timedelta(hours=1), "0.75")  # 09:00, which the 10:05 run pays: not late
    shown = section(staff_client.get(URL), "arrears")
    assert f"{large.name} €1.50 2026-11-22 05:00 UTC {small.name} €0.25 2026-11-22 07:00 UTC" in shown
    assert paying.name not in shown
    assert "Total: 2 households €1.75" in shown


@pytest.mark.parametrize(("owed", "verdict"), [("99.99", "ok"), ("115.00", "fail")])
def test_the_settlement_backlog_fails_here_while_arrears_exceed_the_limit_but_not_healthz(
    staff_client, client, make_household, settings, owed, verdict
):
    settings.STATUS_ARREARS_MAX_EUR = Decimal("100")
    tick(NOW)
    quote(NOW)
    open_line(make_household(), HOUR - timedelta(hours=4), "40.00")
    open_line(make_household(), HOUR - timedelta(hours=3), str(Decimal(owed) - 40))
    shown = section(staff_client.get(URL), "checks")
    assert f"settlement_backlog {verdict} " in shown
    assert f"households in arrears: 2, arrears: €{owed} (at most €100.00)" in shown
    # A load balancer reading /healthz must not take the web out of service for what households owe.
    health.memo.clear()
    assert client.get("/healthz").json()["checks"]["settlement_backlog"]["ok"] is True


def test_the_page_costs_the_same_few_queries_however_many_households_owe(staff_client, make_household):
    tick(NOW)
    quote(NOW)

    def queries_with_debtors(n: int) -> int:
        for _ in range(n):
            open_line(make_household(), HOUR - timedelta(hours=3), "0.25")
        health.memo.clear()
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(URL).status_code == 200
        return len(queries)

    assert queries_with_debtors(1) == queries_with_debtors(8) <= 60  # PostgreSQL: + a statement timeout each
    assert status.arrears(NOW)["households"] == 9
    assert status.arrears(NOW)["eur"] == Decimal("2.250000")


def test_a_section_whose_query_fails_says_so_and_the_rest_still_shows(staff_client, monkeypatch):
    def timed_out(now):
        raise DatabaseError("canceling statement due to statement timeout")

    monkeypatch.setattr(status, "ingest_rates", timed_out)
    response = staff_client.get(URL)
    assert response.status_code == 200
    assert "unavailable" in section(response, "ingest")
    assert "Active 0" in section(response, "meters")
