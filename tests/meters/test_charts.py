"""The usage chart's bars: local hours, days and months in the household's time zone, summed in SQL."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from lib.periods import HOUR, ceil_hour, hours_between, local_date
from meters.charts import ChartView, Period, usage_chart
from meters.models import DynamicPrice, HourlyUsage, Meter, Tariff, TariffVersion

TODAY = date(2026, 11, 22)  # a Sunday
_hours = itertools.count()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_line(household, hour: datetime, kwh: str, rate: str | None = "0.25", *, meter: Meter | None = None):
    """An energy line; ``rate=None`` makes it unpriced. Each gets its own seq, so hours may repeat."""
    meter = meter or household.meters.first() or Meter.objects.create(serial=f"CH-{next(_hours)}", household=household)
    kwh_d = Decimal(kwh)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=next(_hours) % 30000,
        kwh=kwh_d,
        rate=None if rate is None else Decimal(rate),
        cost_eur=None if rate is None else (kwh_d * Decimal(rate)).quantize(Decimal("0.000001")),
        settled_at=hour + 2 * HOUR,  # settled lines: any number of them per meter and hour
    )


def add_standing(household, hour: datetime, eur: str):
    return HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.STANDING,
        hour_start=hour,
        seq=next(_hours) % 30000,
        cost_eur=Decimal(eur),
        settled_at=hour + 2 * HOUR,
    )


NOW = datetime(2026, 11, 22, 22, 59, tzinfo=UTC)  # 23:59 local: every hour of TODAY has begun


def chart(household, range_: str = "day", day: date = TODAY, unit: str = "eur", now: datetime = NOW):
    return usage_chart(household, ChartView(range_, unit, day, local_date(now, household.timezone)), now)


def by_label(result) -> dict:
    return {bar.label: bar for bar in result.bars}


@pytest.fixture
def tou_tariff(db) -> Tariff:
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
    return tariff


def test_a_day_has_24_local_hours_each_the_sum_of_its_lines(household, other_household):
    # Madrid in November is UTC+1: the local day is 2026-11-21 23:00 to 2026-11-22 23:00 UTC.
    add_line(household, utc(2026, 11, 21, 22), "9")  # 23:00 the day before
    add_line(household, utc(2026, 11, 21, 23), "1.5")  # 00:00
    add_line(household, utc(2026, 11, 21, 23), "0.5")  # 00:00, a second meter line
    add_line(household, utc(2026, 11, 22, 13), "2", "0.30")  # 14:00
    add_standing(household, utc(2026, 11, 22, 13), "0.010000")
    add_line(household, utc(2026, 11, 22, 23), "7")  # 00:00 the day after
    add_line(other_household, utc(2026, 11, 22, 13), "100")

    result = chart(household)

    assert [bar.label for bar in result.bars] == [f"{h:02d}:00" for h in range(24)]
    bars = by_label(result)
    assert (bars["00:00"].kwh, bars["00:00"].eur, bars["00:00"].rate) == (Decimal("2"), Decimal("0.5"), Decimal("0.25"))
    # Money includes the standing charge; kWh and the energy's average rate do not.
    assert (bars["14:00"].kwh, bars["14:00"].eur, bars["14:00"].rate) == (Decimal("2"), Decimal("0.61"), Decimal("0.3"))
    assert bars["14:00"].standing_eur == Decimal("0.01")
    assert sum(bar.kwh for bar in result.bars) == Decimal("4")
    assert result.total_eur == Decimal("1.11")
    assert bars["01:00"].kwh == 0 and bars["01:00"].rate is None


def test_the_spring_forward_day_has_23_bars_without_2_am(household):
    # Europe/Madrid 2026-03-29: 02:00 CET jumps to 03:00 CEST. 01:00 UTC is 03:00 local.
    add_line(household, utc(2026, 3, 29, 1), "3")
    result = chart(household, day=date(2026, 3, 29))
    labels = [bar.label for bar in result.bars]
    assert len(labels) == 23
    assert labels[:4] == ["00:00", "01:00", "03:00", "04:00"]
    assert by_label(result)["03:00"].kwh == Decimal("3")


def test_the_fall_back_day_has_25_bars_and_names_the_repeated_hour(household):
    # Europe/Madrid 2026-10-25: 03:00 CEST falls back to 02:00 CET; 00:00 and 01:00 UTC are both "02:00".
    add_line(household, utc(2026, 10, 25, 0), "1")
    add_line(household, utc(2026, 10, 25, 1), "2")
    result = chart(household, day=date(2026, 10, 25))
    labels = [bar.label for bar in result.bars]
    assert len(labels) == 25
    assert labels[:5] == ["00:00", "01:00", "02:00 CEST", "02:00 CET", "03:00"]
    bars = by_label(result)
    assert (bars["02:00 CEST"].kwh, bars["02:00 CET"].kwh) == (Decimal("1"), Decimal("2"))


def test_a_half_hour_zone_day_has_the_utc_hours_starting_inside_it(make_household):
    household = make_household(timezone="Asia/Kolkata")  # UTC+5:30, day starts 18:30 UTC
    add_line(household, utc(2026, 11, 21, 18), "5")  # 23:30 local the day before
    add_line(household, utc(2026, 11, 21, 19), "1")  # 00:30 local
    result = chart(household)
    assert len(result.bars) == 24
    assert result.bars[0].label == "00:30"
    assert result.total_kwh == Decimal("1")


def test_a_week_has_7_local_days_from_monday(household):
    add_line(household, utc(2026, 11, 15, 22), "9")  # Sunday 15th, 23:00 local: the week before
    add_line(household, utc(2026, 11, 15, 23), "1")  # Monday 16th, 00:00 local
    add_line(household, utc(2026, 11, 22, 22), "2")  # Sunday 22nd, 23:00 local
    add_line(household, utc(2026, 11, 22, 23), "9")  # Monday 23rd: the next week
    result = chart(household, "week")
    assert [bar.label for bar in result.bars] == ["Mon 16", "Tue 17", "Wed 18", "Thu 19", "Fri 20", "Sat 21", "Sun 22"]
    assert [bar.kwh for bar in result.bars] == [Decimal("1")] + [Decimal("0")] * 5 + [Decimal("2")]
    assert result.title == "16 Nov \N{EN DASH} 22 Nov 2026"


def test_the_week_ending_on_the_fall_back_day_puts_both_2_am_hours_on_sunday(household):
    add_line(household, utc(2026, 10, 25, 0), "1")
    add_line(household, utc(2026, 10, 25, 1), "2")
    add_line(household, utc(2026, 10, 25, 22), "4")  # 23:00 CET, still Sunday
    result = chart(household, "week", date(2026, 10, 21))
    assert len(result.bars) == 7
    assert result.bars[-1].kwh == Decimal("7")


def test_month_bars_equal_the_sums_of_each_local_days_lines(household):
    hours = [utc(2026, 10, 31, 23), utc(2026, 11, 1, 5), utc(2026, 11, 15, 12), utc(2026, 11, 30, 22)]
    for number, hour in enumerate(hours, start=1):
        add_line(household, hour, str(number), "0.2")
    add_line(household, utc(2026, 11, 30, 23), "50")  # 1 December local
    add_line(household, utc(2026, 10, 31, 22), "50")  # 31 October local
    result = chart(household, "month")
    assert len(result.bars) == 30
    kwh = {bar.label: bar.kwh for bar in result.bars if bar.kwh}
    assert kwh == {"1": Decimal("3"), "15": Decimal("3"), "30": Decimal("4")}
    eur = {bar.label: bar.eur for bar in result.bars if bar.eur}
    assert eur == {"1": Decimal("0.6"), "15": Decimal("0.6"), "30": Decimal("0.8")}


def test_a_year_has_12_local_months(household):
    add_line(household, utc(2025, 12, 31, 22), "50")  # 23:00 on 31 December 2025, local
    add_line(household, utc(2025, 12, 31, 23), "1")  # 1 January 2026, local
    add_line(household, utc(2026, 3, 31, 22), "2")  # 1 April, local (CEST)
    add_line(household, utc(2026, 12, 31, 22), "3")  # 31 December 2026, 23:00 local
    result = chart(household, "year")
    assert [bar.label for bar in result.bars][:3] == ["Jan", "Feb", "Mar"]
    assert len(result.bars) == 12
    assert [bar.kwh for bar in result.bars] == [
        Decimal(v) for v in ["1", "0", "0", "2", "0", "0", "0", "0", "0", "0", "0", "3"]
    ]


def test_unpriced_lines_count_in_kwh_but_not_in_money(household):
    add_line(household, utc(2026, 11, 22, 10), "2", "0.25")
    add_line(household, utc(2026, 11, 22, 10), "3", None)
    bar = by_label(chart(household))["11:00"]
    assert (bar.kwh, bar.eur, bar.pending_kwh, bar.rate) == (
        Decimal("5"),
        Decimal("0.5"),
        Decimal("3"),
        Decimal("0.25"),
    )
    assert "price pending for 3.000 kWh" in bar.tooltip()


def test_the_chart_data_carries_the_bars_in_the_unit_asked_for(household):
    add_line(household, utc(2026, 11, 22, 10), "2", "0.25")
    in_eur = chart(household).data()
    in_kwh = chart(household, unit="kwh").data()
    assert in_eur["values"][11] == "0.500000" and in_kwh["values"][11] == "2.000000"
    assert in_eur["tips"][11] == [
        "2.000 kWh",
        "average €0.2500/kWh",
        "€0.50",
        "energy €0.50",
        "standing charge €0.00",
        "taxes €0.00",
    ]
    assert in_eur["price"] is None  # a flat tariff has no price curve


def test_a_time_of_use_day_has_the_tariffs_price_for_every_local_hour(make_household, tou_tariff):
    household = make_household(tariff=tou_tariff)
    result = chart(household)
    assert result.price_label == "Tariff price (EUR/kWh)"
    prices = [bar.price for bar in result.bars]
    assert prices == [Decimal("0.10")] * 8 + [Decimal("0.30")] * 16  # bands are in local time
    data = result.data()
    assert data["price"]["values"][0] == "0.100000" and data["price"]["text"][8] == "€0.3000/kWh"


def test_a_time_of_use_week_shows_the_average_price_paid_per_day(make_household, tou_tariff):
    household = make_household(tariff=tou_tariff)
    add_line(household, utc(2026, 11, 20, 2), "1", "0.10")  # Friday 03:00 local
    add_line(household, utc(2026, 11, 20, 12), "3", "0.30")  # Friday 13:00 local
    result = chart(household, "week")
    assert result.price_label == "Average price paid (EUR/kWh)"
    assert by_label(result)["Fri 20"].price == Decimal("0.25")
    assert by_label(result)["Sat 21"].price is None


def test_a_dynamic_day_shows_known_hour_prices_and_gaps(make_household):
    tariff = Tariff.objects.create(name="Spot")
    version = TariffVersion.objects.create(tariff=tariff, valid_from=utc(2026, 1, 1), kind=TariffVersion.Kind.DYNAMIC)
    DynamicPrice.objects.create(version=version, hour_start=utc(2026, 11, 21, 23), rate=Decimal("0.11"))
    DynamicPrice.objects.create(version=version, hour_start=utc(2026, 11, 22, 0), rate=Decimal("0.12"))
    household = make_household(tariff=tariff)
    prices = [bar.price for bar in chart(household).bars]
    assert prices[:3] == [Decimal("0.11"), Decimal("0.12"), None]


def test_a_tariff_that_turns_time_of_use_mid_range_gets_a_price_curve(household, flat_tariff):
    TariffVersion.objects.create(
        tariff=flat_tariff,
        valid_from=utc(2026, 11, 22, 11),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[{"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 24, "rate": "0.40"}],
    )
    prices = [bar.price for bar in chart(household).bars]
    assert prices[11] == Decimal("0.25") and prices[12] == Decimal("0.40")
    # The version in force from 2020 on is flat, and so is everything before the change.
    assert chart(household, day=date(2026, 11, 21)).price_label is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ("day", "eur", TODAY)),
        ({"range": "week", "unit": "kwh", "date": "2026-03-29"}, ("week", "kwh", date(2026, 3, 29))),
        ({"range": "foo", "unit": "x", "date": "garbage"}, ("day", "eur", TODAY)),
        ({"date": "2026-02-30"}, ("day", "eur", TODAY)),
        ({"date": "0001-01-01"}, ("day", "eur", TODAY)),
        ({"date": "9999-12-31"}, ("day", "eur", TODAY)),
        ({"range": "WEEK", "unit": "EUR"}, ("day", "eur", TODAY)),
    ],
)
def test_the_view_falls_back_to_defaults_for_anything_it_does_not_know(params, expected):
    view = ChartView.from_params(params, TODAY)
    assert (view.range, view.unit, view.day) == expected


def test_links_keep_the_view_and_leave_out_todays_date():
    view = ChartView("week", "kwh", date(2026, 11, 4), TODAY)
    assert view.query(range="month") == "range=month&unit=kwh&date=2026-11-04"
    assert view.query(date=TODAY) == "range=week&unit=kwh"


@pytest.mark.parametrize(
    ("range_", "day", "previous", "following"),
    [
        ("day", date(2026, 3, 1), date(2026, 2, 28), date(2026, 3, 2)),
        ("week", date(2026, 11, 4), date(2026, 11, 1), date(2026, 11, 9)),
        ("month", date(2026, 1, 31), date(2025, 12, 31), date(2026, 2, 1)),
        ("year", date(2026, 6, 15), date(2025, 12, 31), date(2027, 1, 1)),
    ],
)
def test_previous_and_next_periods(range_, day, previous, following):
    period = Period.containing(range_, day, "Europe/Madrid")
    assert period.previous_day == previous
    assert period.stop == following
    assert Period.containing(range_, previous, "Europe/Madrid").stop == period.first


def test_there_is_no_next_link_into_the_future(household):
    assert chart(household).next_query is None
    assert chart(household).today_query is None
    earlier = chart(household, day=TODAY - timedelta(days=2))
    assert earlier.next_query == "range=day&unit=eur&date=2026-11-21"
    assert earlier.today_query == "range=day&unit=eur"


def test_hours_and_days_that_have_not_begun_have_no_bar(household):
    add_line(household, utc(2026, 11, 22, 9), "1")
    data = chart(household, now=utc(2026, 11, 22, 9, 30)).data()  # 10:30 local
    assert data["values"][10] == "0.250000"
    assert data["values"][11] is None and data["tips"][11] == ["not yet"]
    week = chart(household, "week", date(2026, 11, 23), now=utc(2026, 11, 23, 9)).data()
    assert week["values"][0] == "0" and week["values"][1:] == [None] * 6


# --- Every bar is the sum of its lines, recomputed from the hourly rows -------------------------------------


def recomputed(household, period: Period) -> dict[date | datetime, tuple[Decimal, Decimal, Decimal]]:
    """(kWh, EUR, kWh waiting for a price) per bar key, from the household's lines, in Python."""
    tz = ZoneInfo(household.timezone)
    sums: dict = {}
    lines = HourlyUsage.objects.filter(household=household, hour_start__gte=period.start, hour_start__lt=period.end)
    for line in lines:
        local = line.hour_start.astimezone(tz).date()
        key = {"day": line.hour_start, "year": local.replace(day=1)}.get(period.range, local)
        kwh, eur, pending = sums.get(key, (Decimal(0), Decimal(0), Decimal(0)))
        energy = line.kind == HourlyUsage.Kind.ENERGY
        sums[key] = (
            kwh + (line.kwh if energy else 0),
            eur + (line.cost_eur or 0),
            pending + (line.kwh if line.cost_eur is None else 0),
        )
    return sums


def bar_keys(period: Period) -> list[date | datetime]:
    if period.range == "day":
        return hours_between(ceil_hour(period.start), period.end)
    if period.range == "year":
        return [date(period.first.year, month, 1) for month in range(1, 13)]
    return [period.first + timedelta(days=n) for n in range((period.stop - period.first).days)]


@pytest.mark.parametrize("zone", ["Europe/Madrid", "Australia/Adelaide", "Asia/Kolkata", "America/St_Johns"])
def test_every_bar_of_every_range_is_the_sum_of_its_lines_recomputed_from_the_hourly_rows(make_household, zone):
    """Lines over 14 months, DST changes included, in zones a whole, half an hour or 9.5 hours off UTC."""
    household = make_household(timezone=zone)
    other = make_household(timezone=zone)
    hour = utc(2025, 10, 1)
    for n in range(0, 24 * 430, 7):  # every 7th hour: every local hour of the day, every weekday
        moment = hour + n * HOUR
        kwh = f"{(n * 37) % 1000 / 1000 + 0.001:.6f}"
        add_line(household, moment, kwh, None if n % 11 == 0 else f"0.{100000 + n % 300000:06d}")
        if n % 3 == 0:
            add_standing(household, moment, "0.004167")
        if n % 5 == 0:
            add_line(other, moment, "50")  # another household's lines never count
    days = [date(2026, 3, 29), date(2026, 4, 5), date(2026, 10, 4), date(2026, 10, 25), date(2026, 11, 1), TODAY]
    views = [("day", day) for day in days] + [("week", day) for day in days]
    views += [("month", date(2026, month, 15)) for month in (2, 3, 4, 10, 11)] + [
        ("year", TODAY),
        ("year", date(2025, 12, 1)),
    ]
    for range_, day in views:
        result = chart(household, range_, day)
        expected = recomputed(household, result.period)
        keys = bar_keys(result.period)
        assert set(expected) <= set(keys), (range_, day)  # no line falls outside the bars
        zero = (Decimal(0), Decimal(0), Decimal(0))
        got = [(bar.kwh, bar.eur, bar.pending_kwh) for bar in result.bars]
        assert got == [expected.get(key, zero) for key in keys], (range_, day)


# --- The table's rows ---------------------------------------------------------------------------------------

# The loop the chart partial would be as a template (Chart.table_rows): rows only for bars with lines
# that have begun; energy, standing charge, taxes and total as the table rounds them (Chart.rounded).
ROWS_AS_A_TEMPLATE = """
{% load money %}
{% for bar in chart.bars %}{% if bar.in_table %}
<tr><th scope="row">{{ bar.label }}</th>
<td class="num">{{ bar.kwh_text }}</td><td class="num">{{ rate }}</td>
<td class="num">{{ bar.shown.0|money:"EUR" }}</td><td class="num">{{ bar.shown.1|money:"EUR" }}</td>
<td class="num">{{ bar.shown.2|money:"EUR" }}</td>
<td class="num row-total">{{ bar.shown.3|money:"EUR" }}{% if bar.pending_kwh %} <span class="badge">
price pending</span>{% endif %}</td></tr>
{% endif %}{% endfor %}
"""


def without_line_breaks(html: str) -> str:
    return "".join(line.strip() for line in html.splitlines())


@pytest.mark.parametrize("range_", ["day", "week", "month", "year"])
def test_the_table_rows_are_what_the_template_loop_wrote(make_household, tou_tariff, range_):
    from django.template import engines

    household = make_household(tariff=tou_tariff)
    add_line(household, utc(2026, 11, 22, 9), "1.5")
    add_line(household, utc(2026, 11, 22, 10), "2", None)  # price pending
    add_standing(household, utc(2026, 11, 22, 10), "0.010000")
    result = chart(household, range_, now=utc(2026, 11, 22, 12, 30))  # later hours and days: not yet
    rows = result.table_rows()
    rate = "{{ bar.price_text }}" if range_ == "day" else "{{ bar.rate_text }}"
    template = ROWS_AS_A_TEMPLATE.replace("{{ rate }}", rate)
    expected = engines["django"].from_string(template).render({"chart": result})
    assert without_line_breaks(rows) == without_line_breaks(expected)
    assert "price pending" in expected
    assert "not yet" not in rows and rows.count("<tr>") == (2 if range_ == "day" else 1)


def test_the_table_rows_escape_every_text(household):
    add_line(household, utc(2026, 11, 21, 23), "1")  # 00:00: the first row
    result = chart(household)
    result.bars[0].label = '<script>alert("x")</script>'
    assert "<script>" not in result.table_rows() and "&lt;script&gt;" in result.table_rows()


def test_the_electricity_tax_minimum_counts_with_the_taxes_not_the_standing_charge(household):
    # A day with 2 kWh at 0.25 and 0.01 of standing charge, and the month's minimum line (meters/minimum_tax.py):
    # 0.009775 of electricity tax with 0.002053 of VAT on it. Taxes 0.009775 + 0.002053 = 0.011828.
    hour = utc(2026, 11, 22, 10)
    add_line(household, hour, "2")
    add_standing(household, hour, "0.010000")
    HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.MINIMUM,
        hour_start=hour,
        cost_eur=Decimal("0.009775"),
        tax_rate=Decimal("0.21"),
        tax_eur=Decimal("0.002053"),
    )
    bar = chart(household, "week").bars[6]  # Sunday the 22nd
    assert (bar.energy_eur, bar.standing_eur, bar.tax_eur) == (Decimal("0.5"), Decimal("0.01"), Decimal("0.011828"))
    assert bar.eur == Decimal("0.521828")
