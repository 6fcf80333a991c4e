"""The household dashboard: cards, the usage chart and its htmx partial, for each persona."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind
from energypay.accounts.models import User
from energypay.dashboard import dashboard_cards
from meters.models import HourlyUsage, Meter, Tariff, TariffVersion
from meters.usage import bump_usage_version
from payments.models import PriceQuote, Utxo
from payments.wallets import open_wallet

NOW = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # Sunday 12:00 in Madrid (UTC+1)
URL = reverse("dashboard")
HTMX = {"HTTP_HX_REQUEST": "true"}
_seq = itertools.count()


pytestmark = pytest.mark.time_machine(NOW, tick=False)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_line(household, hour, kwh: str, rate: str | None = "0.25", *, settled: bool = True) -> HourlyUsage:
    meter = household.meters.first() or Meter.objects.create(serial=f"DB-{household.pk}", household=household)
    kwh_d = Decimal(kwh)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=next(_seq) % 30000,
        kwh=kwh_d,
        rate=None if rate is None else Decimal(rate),
        cost_eur=None if rate is None else kwh_d * Decimal(rate),
        settled_at=hour + timedelta(hours=1, minutes=5) if settled else None,
    )


def add_standing(household, hour, eur: str) -> HourlyUsage:
    return HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.STANDING,
        hour_start=hour,
        seq=next(_seq) % 30000,
        cost_eur=Decimal(eur),
        settled_at=hour + timedelta(hours=1, minutes=5),
    )


def fund(household, satoshis: int, bsv_eur: str = "30") -> None:
    wallet = open_wallet(household)
    Utxo.objects.create(wallet=wallet, txid=f"{wallet.pk:064x}", vout=0, satoshis=satoshis, raw_parent="00")
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal(bsv_eur), fetched_at=NOW - timedelta(minutes=2))


def chart_data(response) -> dict:
    match = re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', response.content.decode())
    assert match, "no chart data in the page"
    return json.loads(match.group(1))


@pytest.fixture
def history(household):
    """A month of lines, two of them unpaid (one in arrears) and one waiting for its price."""
    add_line(household, utc(2026, 10, 31, 22), "10")  # 31 October, 23:00 local: last month
    add_line(household, utc(2026, 11, 1, 10), "4")  # EUR 1.00
    add_line(household, utc(2026, 11, 15, 11), "8")  # EUR 2.00, the first hour of the last 7 days
    add_line(household, utc(2026, 11, 21, 23), "2")  # EUR 0.50, today 00:00 local
    add_line(household, utc(2026, 11, 22, 8), "1", settled=False)  # EUR 0.25, unpaid: arrears
    add_line(household, utc(2026, 11, 22, 9), "2", settled=False)  # EUR 0.50, unpaid, the last run's hour
    add_line(household, utc(2026, 11, 22, 10), "1", None, settled=False)  # price pending
    add_standing(household, utc(2026, 11, 22, 10), "0.10")
    fund(household, 50_000_000)  # 0.5 BSV at 30 EUR/BSV: EUR 15
    return household


# --- Cards ------------------------------------------------------------------------------------------


def test_cards_add_up_today_this_month_and_the_recent_rate(history):
    cards = dashboard_cards(history, NOW)
    assert (cards.today.eur, cards.today.kwh, cards.today.pending_kwh) == (Decimal("1.35"), Decimal(6), Decimal(1))
    assert (cards.month.eur, cards.month.kwh, cards.month.pending_kwh) == (Decimal("4.35"), Decimal(18), Decimal(1))
    # The last 7 days of closed hours cost EUR 3.35: EUR 0.478571... a day. 8.5 days of November remain.
    assert cards.per_day_eur == Decimal("0.48")
    assert cards.projected_eur == Decimal("8.42")  # 4.35 + 3.35 / 7 * 8.5
    assert (cards.balance.satoshis, cards.balance.eur) == (50_000_000, Decimal("15"))
    assert cards.owed_eur == Decimal("0.75")
    assert cards.days_left == 29  # (15 - 0.75) / (3.35 / 7) = 29.78


def test_arrears_are_unpaid_hours_the_last_run_should_have_paid(history):
    # At 11:00 the 11:05 run has not happened: hours before 10:00 were due; an hour of slack leaves 09:00.
    cards = dashboard_cards(history, NOW)
    assert (cards.arrears_eur, cards.arrears_since) == (Decimal("0.25"), utc(2026, 11, 22, 8))


def test_arrears_older_than_the_month_are_found(household):
    add_line(household, utc(2026, 9, 3, 7), "4", settled=False)
    add_line(household, utc(2026, 11, 22, 7), "1", settled=False)
    cards = dashboard_cards(household, NOW)
    assert (cards.arrears_eur, cards.arrears_since) == (Decimal("1.25"), utc(2026, 9, 3, 7))
    assert cards.month.eur == Decimal("0.25")


def test_a_new_household_is_rated_over_at_least_a_day(household):
    add_line(household, utc(2026, 11, 22, 9), "2")
    add_line(household, utc(2026, 11, 22, 10), "2")  # EUR 1.00 in its first 2 hours: not EUR 12 a day
    cards = dashboard_cards(household, NOW)
    assert cards.per_day_eur == Decimal("1.00")
    assert cards.days_left is None  # no wallet price: nothing to divide
    assert cards.balance.satoshis == 0


def test_the_current_hour_is_not_part_of_the_rate(household):
    add_line(household, utc(2026, 11, 21, 11), "4")  # EUR 1.00, a day ago
    add_line(household, utc(2026, 11, 22, 11), "40")  # EUR 10.00 in the hour still running
    with time_machine.travel(NOW + timedelta(minutes=40), tick=False):
        cards = dashboard_cards(household, NOW + timedelta(minutes=40))
    assert cards.per_day_eur == Decimal("1.00")
    assert cards.today.eur == Decimal("10.00") and cards.month.eur == Decimal("11.00")


def test_no_usage_means_no_rate_no_days_left_and_the_month_so_far_as_projection(household_client, household):
    fund(household, 1_000_000)
    cards = dashboard_cards(household, NOW)
    assert (cards.per_day_eur, cards.projected_eur, cards.days_left) == (None, Decimal("0.00"), None)
    assert not cards.in_arrears
    page = household_client.get(URL).content.decode()
    assert "so far: no usage in the last 7 days to go by" in page and "no recent usage to go by" in page


def test_the_cards_on_the_page(household_client, history):
    page = household_client.get(URL).content.decode()
    cards = page[page.index('id="cards"') : page.index('id="chart"')]
    assert "€1.35" in cards and "6.00 kWh" in cards and "price pending for 1.00 kWh" in cards
    assert "€4.35" in cards and "€8.42" in cards and "€0.48 a day" in cards
    assert "€15.00" in cards and "50,000,000 sat" in cards and "29 days" in cards
    assert 'id="card-arrears"' in cards and "€0.25" in cards
    assert "22 Nov 2026, 09:00" in cards  # the first unpaid hour in the household's time
    assert "CET" not in cards  # the page names its one time zone once, in the footer
    assert 'id="time-zone">Times in Europe/Madrid.<' in page


def test_no_arrears_card_when_everything_due_is_paid(household_client, household):
    add_line(household, utc(2026, 11, 22, 9), "1", settled=False)  # not due yet
    assert 'id="card-arrears"' not in household_client.get(URL).content.decode()


def test_without_a_price_quote_the_balance_shows_satoshis_only(household_client, household):
    wallet = open_wallet(household)
    Utxo.objects.create(wallet=wallet, txid="ab" * 32, vout=0, satoshis=12_345, raw_parent="00")
    cards = household_client.get(URL).content.decode()
    assert "12,345 sat" in cards and "no BSV/EUR price yet" in cards


# --- Personas -----------------------------------------------------------------------------------------


def test_a_household_sees_its_dashboard(household_client, history):
    response = household_client.get(URL)
    assert response.status_code == 200
    page = response.content.decode()
    for element in ('id="cards"', 'id="chart"', 'id="usage-chart"', 'id="csv-form"', 'id="chart-data"'):
        assert element in page
    assert history.name in page


def test_another_household_sees_only_its_own_figures(other_client, other_household, history):
    add_line(other_household, utc(2026, 11, 22, 9), "40")  # EUR 10.00
    page = other_client.get(URL).content.decode()
    assert "€10.00" in page
    assert "€1.35" not in page and history.name not in page
    assert sum(Decimal(v) for v in chart_data(other_client.get(URL))["values"] if v) == Decimal("10")


def test_staff_without_a_household_go_to_the_admin(staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(URL + "?range=week")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login") + "?next=/%3Frange%3Dweek")


def test_a_user_without_a_household_is_refused(client, db):
    client.force_login(User.objects.create_user("nobody@example.com", "pw-unused-123"))
    assert client.get(URL).status_code == 403


def test_the_dashboard_only_reads(household_client):
    assert household_client.post(URL).status_code == 405
    assert household_client.head(URL).status_code == 200


# --- The chart and its partial ------------------------------------------------------------------------


def test_an_htmx_request_gets_only_the_chart(household_client, history):
    response = household_client.get(URL + "?range=week&unit=kwh", **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith('<section id="chart"')
    assert "<html" not in body and 'id="cards"' not in body and 'id="csv-form"' not in body
    assert 'id="usage-chart"' in body and 'id="chart-data"' in body
    assert "HX-Request" in response["Vary"]


@pytest.mark.parametrize("header", ["HTTP_HX_HISTORY_RESTORE_REQUEST", "HTTP_HX_BOOSTED"])
def test_an_htmx_history_restore_or_boosted_link_gets_the_whole_page(household_client, header):
    response = household_client.get(URL + "?range=week", **HTMX, **{header: "true"})
    assert "<html" in response.content.decode() and 'id="cards"' in response.content.decode()


def test_a_shared_link_shows_the_same_chart_as_the_htmx_swap(household_client, history):
    url = URL + "?range=week&unit=eur&date=2026-11-18"
    page, partial = household_client.get(url), household_client.get(url, **HTMX)
    assert chart_data(page) == chart_data(partial)
    assert chart_data(page)["labels"][0] == "Mon 16"
    assert "<html" in page.content.decode()


def test_switch_links_have_real_hrefs_and_htmx_attributes(household_client):
    page = household_client.get(URL + "?range=month&unit=kwh&date=2026-10-05").content.decode()
    week = re.search(r"<a [^>]*data-range=\"week\"[^>]*>", page).group(0)
    assert 'href="/?range=week&amp;unit=kwh&amp;date=2026-10-05"' in week
    assert 'hx-get="/?range=week&amp;unit=kwh&amp;date=2026-10-05"' in week
    assert 'hx-target="#chart"' in week and 'hx-push-url="true"' in week
    month = re.search(r"<a [^>]*data-range=\"month\"[^>]*>", page).group(0)
    assert 'aria-current="true"' in month and 'aria-current="true"' not in week
    eur = re.search(r"<a [^>]*data-unit=\"eur\"[^>]*>", page).group(0)
    assert 'href="/?range=month&amp;unit=eur&amp;date=2026-10-05"' in eur
    assert 'id="chart-prev"' in page and "date=2026-09-30" in page
    assert 'id="chart-next"' in page and "date=2026-11-01" in page


def test_the_chart_numbers_are_the_sums_of_the_usage_lines(household_client, history):
    data = chart_data(household_client.get(URL + "?range=month&unit=eur", **HTMX))
    november = HourlyUsage.objects.filter(household=history, hour_start__gte=utc(2026, 10, 31, 23))
    expected = sum((line.cost_eur or 0 for line in november), Decimal(0))
    assert sum(Decimal(v) for v in data["values"] if v) == expected == Decimal("4.35")
    kwh = chart_data(household_client.get(URL + "?range=month&unit=kwh", **HTMX))
    assert sum(Decimal(v) for v in kwh["values"] if v) == Decimal("18")
    assert kwh["pending"][21] is True  # 22 November has a line waiting for its price


@pytest.mark.parametrize(
    ("date", "bars", "labels"),
    [
        ("2026-03-29", 23, ["00:00", "01:00", "03:00"]),
        ("2026-10-25", 25, ["00:00", "01:00", "02:00 CEST", "02:00 CET", "03:00"]),
    ],
)
def test_daylight_saving_days_on_the_page(household_client, date, bars, labels):
    data = chart_data(household_client.get(f"{URL}?range=day&date={date}"))
    assert len(data["labels"]) == bars
    assert data["labels"][: len(labels)] == labels


def test_a_time_of_use_tariff_gets_a_price_curve_and_a_flat_one_does_not(household_client, household):
    assert chart_data(household_client.get(URL))["price"] is None
    tou = Tariff.objects.create(name="Two periods")
    TariffVersion.objects.create(
        tariff=tou,
        valid_from=utc(2020, 1, 1),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 12, "rate": "0.1"},
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 12, "end": 24, "rate": "0.3"},
        ],
    )
    household.tariff = tou
    household.save()
    response = household_client.get(URL)
    price = chart_data(response)["price"]
    assert price["values"][11:13] == ["0.100000", "0.300000"]
    assert "Tariff price (EUR/kWh)</th>" in response.content.decode()  # a column of the table too


def test_the_table_shows_the_same_bars(household_client, history):
    page = household_client.get(URL + "?range=week").content.decode()
    table = page[page.index('<details id="chart-table">') :]
    assert '<th scope="row">Sun 22</th>' in table
    assert "€1.35" in table and "price pending" in table and "Total" in table


def on_2_0td(household) -> Tariff:
    td = Tariff.objects.create(name="2.0TD")
    TariffVersion.objects.create(
        tariff=td,
        valid_from=utc(2020, 1, 1),
        kind=TariffVersion.Kind.PERIODS,
        calendar="2.0TD",
        period_rates={"P1": "0.30", "P2": "0.20", "P3": "0.10"},
        power_rates={"P1": "0.073777", "P2": "0.001911"},
        standing_charge_per_day=Decimal("0"),
    )
    household.tariff = td
    household.save()
    return td


def table_periods(page: str) -> dict[str, str]:
    """Hour -> period, from the rows of the chart's table."""
    table = page[page.index('<details id="chart-table">') :]
    return dict(re.findall(r'<tr><th scope="row">(\d\d:\d\d)</th><td>(P\d)</td>', table))


@pytest.mark.parametrize(
    ("day", "hours_utc", "expected"),
    [
        # Friday 20 November, Madrid on UTC+1: night P3, morning P2, peak P1, evening P1, late P2.
        (
            "2026-11-20",
            [2, 8, 10, 17, 21, 22],
            {"03:00": "P3", "09:00": "P2", "11:00": "P1", "18:00": "P1", "22:00": "P2", "23:00": "P2"},
        ),
        # Saturday 21 November: every hour P3.
        ("2026-11-21", [2, 8, 10, 17, 21], {"03:00": "P3", "09:00": "P3", "11:00": "P3", "18:00": "P3", "22:00": "P3"}),
        # Monday 12 October, the Fiesta Nacional, Madrid on UTC+2: every hour P3 ...
        ("2026-10-12", [6, 9, 17], {"08:00": "P3", "11:00": "P3", "19:00": "P3"}),
        # ... and the next day, a Tuesday, in local time (UTC+2, not UTC+1).
        ("2026-10-13", [6, 7, 9, 17], {"08:00": "P2", "09:00": "P2", "11:00": "P1", "19:00": "P1"}),
    ],
)
def test_a_2_0td_day_names_each_local_hours_period_in_the_table_and_the_tooltips(
    household_client, household, day, hours_utc, expected
):
    on_2_0td(household)
    year, month, date_ = map(int, day.split("-"))
    for hour in hours_utc:
        add_line(household, utc(year, month, date_, hour), "1")
    response = household_client.get(f"{URL}?range=day&date={day}")
    page = response.content.decode()
    assert '<th scope="col">Period</th>' in page
    assert table_periods(page) == expected
    data = chart_data(response)
    tips = dict(zip(data["labels"], data["tips"], strict=True))
    assert all(tips[hour][0] == f"period {period}" for hour, period in expected.items())


def test_the_periods_are_in_spanish_too(household_client, household):
    on_2_0td(household)
    household.language = "es"
    household.save()
    add_line(household, utc(2026, 11, 20, 10), "1")
    response = household_client.get(f"{URL}?range=day&date=2026-11-20")
    page = response.content.decode()
    assert '<th scope="col">Periodo</th>' in page and table_periods(page) == {"11:00": "P1"}
    assert chart_data(response)["tips"][11][0] == "periodo P1"


def test_other_tariffs_and_longer_ranges_have_no_period_column(household_client, household):
    add_line(household, utc(2026, 11, 20, 10), "1")
    assert (
        '<th scope="col">Period</th>' not in household_client.get(f"{URL}?range=day&date=2026-11-20").content.decode()
    )
    on_2_0td(household)
    week = household_client.get(f"{URL}?range=week&date=2026-11-20").content.decode()
    assert '<th scope="col">Period</th>' not in week


@pytest.mark.parametrize(
    "query",
    [
        "range=foo&unit=x&date=garbage",
        "range=&unit=&date=",
        "date=2026-13-45",
        "date=0001-01-01",
        "date=9999-12-31",
        "range=year&date=1970-01-01",
        "range=day&date=2200-12-31",
        "range=week&range=month&unit[]=eur",
        "date=%00%ff",
    ],
)
def test_bad_parameters_fall_back_to_defaults(household_client, query):
    for headers in ({}, HTMX):
        response = household_client.get(f"{URL}?{query}", **headers)
        assert response.status_code == 200


def test_garbage_shows_todays_day_in_eur(household_client):
    data = chart_data(household_client.get(URL + "?range=foo&unit=x&date=garbage"))
    assert (data["range"], data["unit"], len(data["labels"])) == ("day", "eur", 24)


def test_the_page_loads_chart_js_pinned_with_its_hash_and_our_script_once(household_client, settings):
    page = household_client.get(URL).content.decode()
    assert f'src="{settings.CHART_JS_URL}" integrity="{settings.CHART_JS_INTEGRITY}" crossorigin="anonymous"' in page
    assert page.count("js/chart-init.js") == 1
    partial = household_client.get(URL, **HTMX).content.decode()
    assert "<script src" not in partial


# --- Alarms on the dashboard and in the nav -----------------------------------------------------------


def add_events(household, count: int, *, read: bool = False) -> None:
    rule = AlarmRule.objects.create(household=household, kind=Kind.DAILY_COST, threshold=Decimal("5"))
    AlarmEvent.objects.bulk_create(
        AlarmEvent(
            household=household,
            rule=rule,
            rule_kind=rule.kind,
            kind="fired" if n % 2 == 0 else "cleared",
            value=Decimal("6.25"),
            threshold=rule.threshold,
            at=NOW - timedelta(hours=count - n),
            read_at=NOW if read else None,
        )
        for n in range(count)
    )


def nav_badge(page: str) -> str | None:
    match = re.search(r'<a href="/alarms/" id="nav-alarms"[^>]*>Alarms(.*?)</a>', page, re.S)
    assert match, "no Alarms link in the nav"
    badge = re.search(r'id="nav-alarms-unread">(\d+)<', match.group(1))
    return badge.group(1) if badge else None


def test_the_dashboard_shows_the_latest_alarms_and_a_way_to_add_one(household_client, household, other_household):
    add_events(household, 7)
    add_events(other_household, 2)
    page = household_client.get(URL).content.decode()
    summary = page[page.index('id="alarm-summary"') : page.index('id="chart"')]
    assert "7 unread" in summary and summary.count("Tell me when a day costs €5.00 or more") == 5
    assert '<a href="/alarms/" id="alarm-summary-list">' in summary
    new = re.search(r'<a [^>]*id="new-alarm"[^>]*>', summary).group(0)
    assert 'href="/alarms/new"' in new and 'hx-get="/alarms/new"' in new and 'hx-target="#alarm-form"' in new
    assert '<div id="alarm-form"></div>' in summary
    assert nav_badge(page) == "7"


def test_new_alarm_swaps_in_the_create_form_and_works_without_javascript(household_client):
    form = household_client.get("/alarms/new", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="alarm-form").content.decode()
    assert form.lstrip().startswith('<form id="alarm-form"') and "<html" not in form
    assert 'hx-target="#alarm-form"' in form  # errors and a changed kind come back into the same place
    page = household_client.get("/alarms/new")
    assert page.status_code == 200 and "<html" in page.content.decode()


def test_the_nav_counts_unread_alarms_on_every_household_page(household_client, household, other_household):
    add_events(household, 3)
    add_events(household, 4, read=True)
    add_events(other_household, 5)
    for url in (URL, reverse("settlement-list"), reverse("wallet"), reverse("community")):
        assert nav_badge(household_client.get(url).content.decode()) == "3", url
    household_client.get(reverse("alarm-list"))  # the history shown is read
    assert nav_badge(household_client.get(reverse("settlement-list")).content.decode()) is None


def test_the_nav_count_costs_one_query_and_only_on_household_pages(household_client, client, household):
    add_events(household, 2)
    with CaptureQueriesContext(connection) as captured:
        household_client.get(reverse("settlement-list"))
    assert sum('"alarms_alarmevent"' in query["sql"] for query in captured.captured_queries) == 1
    with CaptureQueriesContext(connection) as captured:
        assert "Alarms" not in client.get(reverse("login")).content.decode()
    assert not any("alarms_alarmevent" in query["sql"] for query in captured.captured_queries)
    with CaptureQueriesContext(connection) as captured:
        household_client.get(URL, **HTMX)  # the chart alone: no nav
    assert not any("alarms_alarmevent" in query["sql"] for query in captured.captured_queries)


# --- Queries ------------------------------------------------------------------------------------------


def _queries(client, url: str, **headers) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, **headers).status_code == 200
    return len(captured)


@pytest.mark.parametrize("range_", ["day", "week", "month", "year"])
def test_queries_do_not_grow_with_history(household_client, household, range_):
    fund(household, 1_000_000)
    add_line(household, utc(2026, 11, 22, 9), "1", settled=False)
    url = f"{URL}?range={range_}"
    household_client.get(url)  # meters.pricing caches the tariff's versions per process
    page, partial = _queries(household_client, url), _queries(household_client, url, **HTMX)
    start = utc(2025, 11, 1)
    HourlyUsage.objects.bulk_create(
        HourlyUsage(
            household=household,
            meter=household.meters.first(),
            hour_start=start + timedelta(hours=n),
            kwh=Decimal("0.5"),
            rate=Decimal("0.25"),
            cost_eur=Decimal("0.125"),
            settled_at=NOW,
        )
        for n in range(0, 24 * 380, 5)
    )
    bump_usage_version([household.pk])  # what the ledger's writers do (meters/usage.py)
    assert _queries(household_client, url) == page
    assert _queries(household_client, url, **HTMX) == partial
    # The session with its user, household and tariff (energypay/accounts/sessions.py); four for the
    # cards; two for the alarms (their unread count is the nav's too); one for the nav's unread
    # notifications; one for the chart (its sums: the tariff's versions are cached per process); one for
    # the meters' freshness; one for the download form's first data day. The partial: the session and
    # the chart's sums (none once cached).
    assert (page, partial) == (11, 2)


def test_a_dynamic_tariffs_day_costs_one_query_more(household_client, household, django_assert_num_queries):
    dynamic = Tariff.objects.create(name="Dynamic")
    TariffVersion.objects.create(tariff=dynamic, valid_from=utc(2020, 1, 1), kind=TariffVersion.Kind.DYNAMIC)
    household.tariff = dynamic
    household.save()
    household_client.get(f"{URL}?unit=kwh", **HTMX)  # meters.pricing caches a tariff's versions per process
    # The session with its household, the sums and its hours' prices (a chart not cached yet: the unit is another).
    with django_assert_num_queries(3):
        household_client.get(URL, **HTMX)


def test_a_2_0td_day_costs_no_query_more_than_a_time_of_use_one_and_none_once_cached(
    household_client, household, django_assert_num_queries
):
    on_2_0td(household)
    add_line(household, utc(2026, 11, 22, 9), "1")
    household_client.get(f"{URL}?unit=kwh", **HTMX)  # meters.pricing caches a tariff's versions per process
    # The session with its household, and the sums: the periods come from the calendar.
    with django_assert_num_queries(2):
        response = household_client.get(URL, **HTMX)
    assert chart_data(response)["tips"][10][0] == "period P3"  # Sunday
    with django_assert_num_queries(1):  # cached: the session only
        household_client.get(URL, **HTMX)
