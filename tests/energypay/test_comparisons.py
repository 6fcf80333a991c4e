"""The comparison panel: the period in view beside the previous one and last year's, like with like.

Every figure below is worked by hand from the lines the test writes; Madrid is UTC+1 in winter
and UTC+2 in summer, and 2026-03-29 (a Sunday) has 23 hours there.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from energypay.comparisons import compare
from lib.periods import HOUR, local_date
from meters.charts import ChartView
from meters.models import HourlyUsage, Meter
from meters.usage import bump_usage_version

URL = reverse("dashboard-comparison")
HTMX = {"HTTP_HX_REQUEST": "true"}
_seq = itertools.count()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_line(household, hour: datetime, kwh: str, rate: str | None = "0.25", *, tax: str | None = None):
    meter = household.meters.first() or Meter.objects.create(serial=f"CMP-{household.pk}", household=household)
    kwh_d = Decimal(kwh)
    cost = None if rate is None else kwh_d * Decimal(rate)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=next(_seq) % 30000,
        kwh=kwh_d,
        rate=None if rate is None else Decimal(rate),
        cost_eur=cost,
        tax_eur=None if tax is None else Decimal(tax),
        settled_at=hour + HOUR,
    )


def add_standing(household, hour: datetime, eur: str):
    return HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.STANDING,
        hour_start=hour,
        seq=next(_seq) % 30000,
        cost_eur=Decimal(eur),
        settled_at=hour + HOUR,
    )


def view(range_: str, day: date, now: datetime, unit: str = "eur") -> ChartView:
    return ChartView(range_, unit, day, local_date(now, "Europe/Madrid"))


def changes(comparison) -> dict[str, tuple[int | None, str]]:
    return {change.other.kind: (change.percent, change.reason) for change in comparison.changes}


# --- Like with like ---------------------------------------------------------------------------------


def test_a_day_not_over_is_compared_with_the_same_hours_of_yesterday_and_last_year(household):
    now = utc(2026, 11, 22, 13, 20)  # 14:20 in Madrid: the stretches end at 14:00 local
    add_line(household, utc(2026, 11, 22, 9), "2")  # today 10:00: EUR 0.50
    add_line(household, utc(2026, 11, 22, 13), "20")  # today 14:00, the hour still running: not compared
    add_line(household, utc(2026, 11, 21, 9), "1.6")  # yesterday 10:00: EUR 0.40
    add_line(household, utc(2026, 11, 21, 14), "10")  # yesterday 15:00: after the same point, left out
    add_line(household, utc(2025, 11, 22, 9), "2.5")  # a year ago 10:00: EUR 0.625

    result = compare(household, view("day", date(2026, 11, 22), now), now)

    assert (result.current.start, result.current.end) == (utc(2026, 11, 21, 23), utc(2026, 11, 22, 13))
    assert result.others[0].end == utc(2026, 11, 21, 13)
    assert result.current.totals.eur == Decimal("0.50")
    assert result.others[0].totals.eur == Decimal("0.40")
    assert not result.per_day
    # (0.50 - 0.40) / 0.40 = +25%; (0.50 - 0.625) / 0.625 = -20%
    assert changes(result) == {"previous": (25, ""), "last_year": (-20, "")}
    assert result.point == "14:00"


def test_the_23_hour_day_is_one_day_against_a_24_hour_one_and_the_page_says_the_clocks_changed(household):
    now = utc(2026, 3, 30, 10)
    for hour in range(23 + 24):  # 1 kWh (EUR 0.25) in every hour of 28 and 29 March
        add_line(household, utc(2026, 3, 27, 23) + hour * HOUR, "1")

    result = compare(household, view("day", date(2026, 3, 29), now), now)

    assert (result.current.hours, result.others[0].hours) == (23, 24)
    assert result.current.clocks_changed and not result.others[0].clocks_changed
    assert (result.current.totals.eur, result.others[0].totals.eur) == (Decimal("5.75"), Decimal("6.00"))
    assert not result.per_day  # a day is a day: the total is what the household paid for it
    # (5.75 - 6.00) / 6.00 = -4.17%; nothing a year before the first line: no data, not -100% or +inf%
    assert changes(result) == {"previous": (-4, ""), "last_year": (None, "no_data")}


def test_the_23_hour_day_not_over_is_cut_at_the_same_clock_time_as_yesterday(household):
    now = utc(2026, 3, 29, 13, 30)  # 15:30 CEST: 14 real hours since midnight, yesterday 15
    for hour in range(40):
        add_line(household, utc(2026, 3, 27, 23) + hour * HOUR, "1")

    result = compare(household, view("day", date(2026, 3, 29), now), now)

    assert (result.current.end, result.others[0].end) == (utc(2026, 3, 29, 13), utc(2026, 3, 28, 14))
    assert (result.current.hours, result.others[0].hours) == (14, 15)
    assert (result.current.totals.eur, result.others[0].totals.eur) == (Decimal("3.50"), Decimal("3.75"))
    assert changes(result)["previous"] == (-7, "")  # -6.67%
    assert result.point == "15:00"


def test_february_against_january_compares_the_average_per_day(household):
    now = utc(2026, 3, 10, 12)
    day = date(2026, 1, 1)
    while day < date(2026, 3, 1):  # EUR 1.00 every day at noon local
        add_line(household, utc(day.year, day.month, day.day, 11), "4")
        day += timedelta(days=1)

    result = compare(household, view("month", date(2026, 2, 10), now), now)

    assert (result.current.totals.eur, result.others[0].totals.eur) == (Decimal("28.00"), Decimal("31.00"))
    assert result.per_day and result.cut is None
    assert result.current.value("eur", per_day=True) == Decimal("1")
    # 28 EUR in 28 days against 31 EUR in 31 days: the same, not -10%
    assert changes(result) == {"previous": (0, ""), "last_year": (None, "no_data")}


def test_the_30th_of_march_is_compared_with_all_of_february_per_day(household):
    now = utc(2026, 3, 30, 12, 10)  # 14:10 CEST on the 30th: 29 days and 14 hours of March
    day = date(2026, 2, 1)
    while day <= date(2026, 3, 30):
        add_line(household, utc(day.year, day.month, day.day, 10), "4")  # EUR 1.00 a day, before 14:00
        day += timedelta(days=1)

    result = compare(household, view("month", date(2026, 3, 30), now), now)

    previous = result.others[0]
    assert (previous.start, previous.end) == (utc(2026, 1, 31, 23), utc(2026, 2, 28, 23))  # the whole of February
    assert previous.clock == timedelta(days=28) and result.current.clock == timedelta(days=29, hours=14)
    assert (result.current.totals.eur, previous.totals.eur) == (Decimal("30.00"), Decimal("28.00"))
    # 30 / 29.5833 = 1.0141 a day against 1.00: +1%
    assert result.per_day and changes(result)["previous"] == (1, "")
    assert result.point == "30 March, 14:00"


def test_the_same_week_last_year_is_52_weeks_before_and_the_29th_of_february_has_the_28th(household):
    now = utc(2028, 3, 10, 12)
    week = compare(household, view("week", date(2026, 11, 25), now), now)
    assert week.others[1].period.first == date(2025, 11, 24)  # 52 weeks before Monday 2026-11-23: a Monday
    leap = compare(household, view("day", date(2028, 2, 29), now), now)
    assert leap.others[1].period.first == date(2027, 2, 28)
    year = compare(household, view("year", date(2026, 5, 1), now), now)
    assert [other.period.first for other in year.others] == [date(2025, 1, 1)]  # the previous year, once


# --- What counts, and what cannot be compared -----------------------------------------------------------


def test_money_is_energy_standing_charge_and_taxes_and_kwh_the_energy(household):
    now = utc(2026, 11, 23, 12)
    add_line(household, utc(2026, 11, 22, 9), "4", tax="0.21")  # EUR 1.00 + 0.21 taxes
    add_standing(household, utc(2026, 11, 22, 9), "0.50")
    add_line(household, utc(2026, 11, 22, 10), "3", rate=None)  # waiting for its price: kWh only
    add_line(household, utc(2026, 11, 21, 9), "4", tax="0.21")  # the day before: EUR 1.21

    result = compare(household, view("day", date(2026, 11, 22), now, unit="kwh"), now)

    totals = result.current.totals
    assert (totals.eur, totals.kwh, totals.pending_kwh) == (Decimal("1.71"), Decimal("7"), Decimal("3"))
    assert changes(result)["previous"] == (75, "")  # in kWh, the unit in view: 7 against 4


def test_no_previous_data_says_so_and_a_start_inside_a_period_is_not_a_percentage(household):
    now = utc(2026, 11, 27, 12)  # Friday 13:00: each week is counted from Monday to Friday 13:00
    add_line(household, utc(2026, 11, 18, 9), "4")  # the first line: Wednesday of the previous week
    add_line(household, utc(2026, 11, 25, 9), "4")

    result = compare(household, view("week", date(2026, 11, 27), now), now)

    assert changes(result) == {"previous": (None, "partial"), "last_year": (None, "no_data")}
    assert [change.sentence for change in result.changes] == [
        "Not enough data for the previous week: your history starts inside it.",
        "No data for the same week last year.",
    ]


def test_a_previous_period_with_nothing_used_gives_no_percentage(household):
    now = utc(2026, 11, 23, 12)
    add_line(household, utc(2026, 11, 20, 9), "0")  # a line, but nothing used
    add_line(household, utc(2026, 11, 22, 9), "4")

    result = compare(household, view("day", date(2026, 11, 22), now), now)

    assert changes(result)["previous"] == (None, "nothing")


# --- The panel ---------------------------------------------------------------------------------------


@pytest.fixture
def week_of_use(household):
    add_line(household, utc(2026, 11, 22, 9), "2.5")  # today, Sunday 10:00: EUR 0.625
    add_line(household, utc(2026, 11, 21, 9), "2")  # yesterday 10:00: EUR 0.50
    return household


@pytest.mark.parametrize(
    ("language", "figure", "words"),
    [("en", "+25%", "vs the previous day"), ("es", "+25\N{NO-BREAK SPACE}%", "comparado con el día anterior")],
)
@time_machine.travel(utc(2026, 11, 22, 13, 20), tick=False)
def test_the_panel_shows_the_change_in_the_households_language(household_client, week_of_use, language, figure, words):
    week_of_use.language = language
    week_of_use.save(update_fields=["language"])

    html = household_client.get(URL, **HTMX).content.decode()

    assert f"<strong>{figure}</strong> {words}" in html
    assert "<html" not in html  # the partial alone, for the chart panel
    assert 'id="comparison-hint"' not in html  # a flat tariff: nowhere cheaper to move to


@time_machine.travel(utc(2026, 11, 22, 13, 20), tick=False)
def test_without_javascript_the_panel_is_a_page_with_a_way_back(household_client, week_of_use):
    response = household_client.get(URL + "?range=day&unit=kwh")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html
    assert 'id="comparison"' in html and "?range=day&amp;unit=kwh" in html


@time_machine.travel(utc(2026, 11, 22, 13, 20), tick=False)
def test_the_dashboard_chart_loads_the_panel_for_the_period_it_shows(household_client, week_of_use):
    html = household_client.get(reverse("dashboard") + "?range=month&unit=kwh", **HTMX).content.decode()
    assert f'hx-get="{URL}?range=month&amp;unit=kwh"' in html


def test_the_panel_needs_a_login_and_shows_only_the_households_own_use(client, other_client, week_of_use):
    assert client.get(URL).status_code == 302
    with time_machine.travel(utc(2026, 11, 22, 13, 20), tick=False):
        html = other_client.get(URL, **HTMX).content.decode()
    assert "No data for the previous day." in html and "+25" not in html


def test_a_bad_date_shows_today_rather_than_an_error(household_client, week_of_use):
    with time_machine.travel(utc(2026, 11, 22, 13, 20), tick=False):
        response = household_client.get(URL + "?date=2026-02-30&range=nonsense", **HTMX)
    assert response.status_code == 200 and "+25%" in response.content.decode()


@time_machine.travel(utc(2026, 11, 22, 13, 20), tick=False)
def test_the_panel_is_cached_until_the_ledger_changes(household_client, week_of_use):
    household_client.get(URL, **HTMX)
    with CaptureQueriesContext(connection) as hit:
        household_client.get(URL, **HTMX)
    add_line(week_of_use, utc(2026, 11, 22, 10), "2.5")  # today 11:00: today now EUR 1.25
    bump_usage_version([week_of_use.pk])
    with CaptureQueriesContext(connection) as miss:
        html = household_client.get(URL, **HTMX).content.decode()
    assert len(miss) > len(hit)
    assert "+150%" in html  # (1.25 - 0.50) / 0.50


@time_machine.travel(utc(2026, 11, 22, 23, 20), tick=False)  # 00:20 on Monday 23 November in Madrid
def test_in_the_first_hour_of_a_period_there_is_nothing_to_compare_yet(household_client, week_of_use):
    result = compare(week_of_use, view("day", date(2026, 11, 23), utc(2026, 11, 22, 23, 20)), utc(2026, 11, 22, 23, 20))
    assert result.too_early and result.current.end == result.current.start
    html = household_client.get(URL, **HTMX).content.decode()
    assert "The first hour of this period is not over yet" in html and "comparison-changes" not in html


@pytest.mark.parametrize("range_", ["day", "year"])
def test_the_queries_do_not_grow_with_the_history(make_household, range_):
    from meters.models import Tariff, TariffVersion

    tariff = Tariff.objects.create(name="Peak and valley")
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=utc(2020, 1, 1),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 8, "rate": "0.10"},
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 8, "end": 24, "rate": "0.30"},
        ],
    )
    household = make_household(tariff=tariff)
    for day in range(0, 300, 3):  # an evening every third day of 2026 and of 2025
        add_line(household, utc(2026, 1, 1, 19) + timedelta(days=day), "2", "0.30")
        add_line(household, utc(2025, 1, 1, 19) + timedelta(days=day), "2", "0.30")
    now = utc(2026, 11, 22, 13, 20)
    household.refresh_from_db()
    household.tariff  # loaded, as the session loads it  # noqa: B018
    compare(household, view(range_, date(2026, 11, 22), now), now)  # the tariff's versions: cached per process
    with CaptureQueriesContext(connection) as queries:
        result = compare(household, view(range_, date(2026, 11, 22), now), now)
    assert len(queries) == 3  # the stretches' sums, the first line, the hint's priced energy
    if range_ == "year":  # 100 evenings of 2 kWh at 0.30 moved to 0.10, up to 22 November at 14:00
        assert result.hint.saving_eur == Decimal("40.00")


def test_the_cache_key_follows_the_tariff_and_the_hour_only_while_the_period_runs(household, flat_tariff):
    from energypay.comparisons import cache_key
    from meters.models import TariffVersion

    now = utc(2026, 11, 22, 13, 20)
    today, last_week = view("day", date(2026, 11, 22), now), view("week", date(2026, 11, 10), now)
    later = now + HOUR
    assert cache_key(household, today, now) != cache_key(household, today, later)  # today's stretches grew
    assert cache_key(household, last_week, now) == cache_key(household, last_week, later)
    before = cache_key(household, last_week, now)
    TariffVersion.objects.create(tariff=flat_tariff, valid_from=utc(2026, 11, 1), flat_rate=Decimal("0.3"))
    household.refresh_from_db()
    assert cache_key(household, last_week, now) != before  # new prices: a new hint
