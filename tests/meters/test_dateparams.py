"""One date parser for every date a person types: /usage.csv, /payments.csv and the chart's ?date=."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import pytest
from django.urls import reverse

from lib.dateranges import DateParamError, DateRange, parse_day

TODAY = date(2026, 11, 22)
NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
EXPORTS = ("usage-csv", "settlements-csv")


def test_a_date_is_written_yyyy_mm_dd_and_blanks_around_it_do_not_matter():
    assert parse_day(" 2026-11-22 ", "start") == date(2026, 11, 22)
    assert parse_day("", "start") is None and parse_day(None, "start") is None


@pytest.mark.parametrize(
    "text", ["20261122", "2026-W47-1", "22/11/2026", "2026-11-22T00:00", "\uff12\uff10\uff12\uff16-11-22", "2026-02-30"]
)
def test_other_spellings_are_refused_with_the_parameter_named(text):
    with pytest.raises(DateParamError, match=r"^start must be a date written YYYY-MM-DD, not ") as refused:
        parse_day(text, "start")
    assert refused.value.name == "start"


def test_years_outside_1970_to_2200_are_refused():
    for text in ("1969-12-31", "2201-01-01", "9999-12-31", "0001-01-01"):
        with pytest.raises(DateParamError, match="must be between 1970-01-01 and 2200-12-31"):
            parse_day(text, "date")


def test_a_long_value_is_not_echoed_back():
    with pytest.raises(DateParamError) as refused:
        parse_day("x" * 5000, "end")
    assert len(str(refused.value)) < 100


@pytest.mark.parametrize(
    ("params", "first", "last"),
    [
        ({}, date(2026, 11, 1), date(2026, 11, 30)),
        ({"start": "2026-02-10"}, date(2026, 2, 10), date(2026, 2, 28)),
        ({"end": "2024-02-10"}, date(2024, 2, 1), date(2024, 2, 10)),
        ({"start": "2024-01-01", "end": "2024-12-31"}, date(2024, 1, 1), date(2024, 12, 31)),
        ({"start": "", "end": ""}, date(2026, 11, 1), date(2026, 11, 30)),
    ],
)
def test_a_missing_date_comes_from_the_month_of_the_other_one_or_of_today(params, first, last):
    assert DateRange.from_params(params, TODAY) == DateRange(first, last)
    assert DateRange.default(TODAY) == DateRange(date(2026, 11, 1), date(2026, 11, 30))


def test_the_range_is_at_most_366_days_and_in_order():
    with pytest.raises(DateParamError, match="At most 366 days"):
        DateRange.from_params({"start": "2025-01-01", "end": "2026-01-02"}, TODAY)
    with pytest.raises(DateParamError, match=r"end \(2026-11-01\) is before start \(2026-11-02\)"):
        DateRange.from_params({"start": "2026-11-02", "end": "2026-11-01"}, TODAY)


# --- The same rules at every URL that takes dates ------------------------------------------------------


@pytest.mark.time_machine(NOW, tick=False)
@pytest.mark.parametrize(
    "query",
    [
        {"start": "20261101"},
        {"end": "2026-02-30"},
        {"start": "1969-12-31"},
        {"start": "2026-11-01", "end": "2201-01-01"},
        {"start": "2026-11-22", "end": "2026-11-01"},
        {"start": "2025-01-01", "end": "2026-01-02"},
    ],
)
def test_both_csv_exports_refuse_the_same_dates_with_the_same_words(household_client, query):
    answers = [household_client.get(reverse(name), query) for name in EXPORTS]
    assert [answer.status_code for answer in answers] == [400, 400]
    reasons = [re.search(r'role="alert" id="[a-z-]+">(.*?)</p>', answer.text).group(1) for answer in answers]
    assert reasons[0] == reasons[1]
    assert answers[0]["Content-Type"] == "text/html; charset=utf-8"


@pytest.mark.time_machine(NOW, tick=False)
@pytest.mark.parametrize(
    ("query", "days"),
    [
        ({}, "2026-11-01.2026-11-30"),
        ({"start": "2026-02-10"}, "2026-02-10.2026-02-28"),
        ({"end": "2026-03-05"}, "2026-03-01.2026-03-05"),
    ],
)
def test_both_csv_exports_take_the_same_default_range(household_client, query, days):
    first, last = days.split(".")
    usage = household_client.get(reverse("usage-csv"), query)["Content-Disposition"]
    payments = household_client.get(reverse("settlements-csv"), query)["Content-Disposition"]
    assert usage == f'attachment; filename="usage-{first}-to-{last}.csv"'
    assert payments == f'attachment; filename="settlements_{first}_{last}.csv"'


@pytest.mark.time_machine(NOW, tick=False)
@pytest.mark.parametrize("value", ["20261101", "2026-02-30", "1969-12-31", "2201-01-01", "x" * 500])
def test_the_chart_shows_today_and_says_why_when_its_date_cannot_be_used(household_client, value):
    response = household_client.get(reverse("dashboard"), {"range": "day", "date": value})
    assert response.status_code == 200
    chart = response.context["chart"]
    assert chart.view.day == date(2026, 11, 22)
    assert chart.view.error.startswith("date must be ") and chart.view.error.endswith("Showing today instead.")
    assert 'id="chart-error"' in response.text


@pytest.mark.time_machine(NOW, tick=False)
@pytest.mark.parametrize("value", ["2026-11-23", "2030-01-01"])
def test_a_chart_date_that_has_not_come_shows_today_and_says_so(household_client, value):
    response = household_client.get(reverse("dashboard"), {"range": "week", "date": value})
    chart = response.context["chart"]
    assert chart.view.day == date(2026, 11, 22) and chart.next_query is None
    assert "has not come yet: showing today" in chart.view.error and 'id="chart-error"' in response.text


@pytest.mark.time_machine(NOW, tick=False)
def test_a_good_chart_date_shows_no_error(household_client):
    response = household_client.get(reverse("dashboard"), {"range": "day", "date": " 2026-11-20 "})
    assert response.context["chart"].view.day == date(2026, 11, 20)
    assert 'id="chart-error"' not in response.text


def test_a_range_spans_local_midnight_to_local_midnight_in_utc_across_a_daylight_saving_change():
    days = DateRange(date(2026, 10, 25), date(2026, 10, 25))  # 25 hours in Amsterdam
    start, end = days.utc_bounds("Europe/Amsterdam")
    assert start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    assert end == datetime(2026, 10, 25, 23, 0, tzinfo=UTC)
