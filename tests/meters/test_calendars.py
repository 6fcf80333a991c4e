"""The 2.0TD calendar (CNMC Circular 3/2020, docs/spain.md): periods by local hour, weekends, every
national holiday of 2026 and 2027, the Ceuta and Melilla variant, and the 23- and 25-hour days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from lib.periods import HOUR, local_midnight, zone
from meters.calendars import CALENDARS, get_calendar, national_holidays, parse_period_rates

MADRID = "Europe/Madrid"
TD = CALENDARS["2.0TD"]
CM = CALENDARS["2.0TD-CM"]

# Hour by hour, a working day of each calendar as the Circular tabulates it (local clock hours 0-23).
WORKING_2_0TD = ["P3"] * 8 + ["P2"] * 2 + ["P1"] * 4 + ["P2"] * 4 + ["P1"] * 4 + ["P2"] * 2
WORKING_CEUTA_MELILLA = ["P3"] * 8 + ["P2"] * 3 + ["P1"] * 4 + ["P2"] * 4 + ["P1"] * 4 + ["P2"]
POWER_WORKING = ["P2"] * 8 + ["P1"] * 16

HOLIDAYS_2026 = [
    date(2026, 1, 1),  # Thursday
    date(2026, 1, 6),  # Tuesday
    date(2026, 5, 1),  # Friday
    date(2026, 8, 15),  # Saturday
    date(2026, 10, 12),  # Monday
    date(2026, 11, 1),  # Sunday
    date(2026, 12, 6),  # Sunday
    date(2026, 12, 8),  # Tuesday
    date(2026, 12, 25),  # Friday
]
HOLIDAYS_2027 = [
    date(2027, 1, 1),  # Friday
    date(2027, 1, 6),  # Wednesday
    date(2027, 5, 1),  # Saturday
    date(2027, 8, 15),  # Sunday
    date(2027, 10, 12),  # Tuesday
    date(2027, 11, 1),  # Monday
    date(2027, 12, 6),  # Monday
    date(2027, 12, 8),  # Wednesday
    date(2027, 12, 25),  # Saturday
]


def periods_of_day(calendar, day: date, tz_name: str = MADRID) -> list[str]:
    """The energy period of each UTC hour of a local day, read back in local time."""
    start, end = local_midnight(day, tz_name), local_midnight(day + timedelta(days=1), tz_name)
    hours, hour = [], start
    while hour < end:
        hours.append(calendar.energy_period(hour.astimezone(zone(tz_name))))
        hour += HOUR
    return hours


def test_a_working_day_follows_the_circulars_table():
    assert periods_of_day(TD, date(2026, 11, 18)) == WORKING_2_0TD  # a Wednesday
    assert [TD.power_period(datetime(2026, 11, 18, h, tzinfo=zone(MADRID))) for h in range(24)] == POWER_WORKING


def test_ceuta_and_melilla_shift_p1_and_p2_by_an_hour_and_keep_p3():
    assert periods_of_day(CM, date(2026, 11, 18), "Africa/Ceuta") == WORKING_CEUTA_MELILLA
    assert CM.working_power == TD.working_power


@pytest.mark.parametrize("day", [date(2026, 11, 21), date(2026, 11, 22)], ids=["Saturday", "Sunday"])
def test_weekends_are_p3_all_day_for_energy_and_p2_for_power(day):
    assert periods_of_day(TD, day) == ["P3"] * 24
    assert periods_of_day(CM, day) == ["P3"] * 24
    assert {TD.power_period(datetime(day.year, day.month, day.day, h, tzinfo=zone(MADRID))) for h in range(24)} == {
        "P2"
    }


@pytest.mark.parametrize("day", HOLIDAYS_2026 + HOLIDAYS_2027, ids=str)
def test_every_national_holiday_of_2026_and_2027_is_p3_all_day(day):
    assert day in national_holidays(day.year)
    assert periods_of_day(TD, day) == ["P3"] * 24
    assert periods_of_day(CM, day) == ["P3"] * 24


def test_the_holiday_lists_of_2026_and_2027_are_exactly_the_nine_fixed_ones():
    assert sorted(national_holidays(2026)) == HOLIDAYS_2026
    assert sorted(national_holidays(2027)) == HOLIDAYS_2027


@pytest.mark.parametrize(
    "day",
    [
        pytest.param(date(2026, 4, 3), id="Good Friday 2026 (no fixed date)"),
        pytest.param(date(2027, 3, 26), id="Good Friday 2027"),
        pytest.param(date(2026, 4, 2), id="Maundy Thursday 2026 (regional)"),
        pytest.param(date(2026, 5, 15), id="San Isidro, Madrid city (local)"),
        pytest.param(date(2026, 11, 2), id="Monday after All Saints on a Sunday (a substitute)"),
        pytest.param(date(2026, 12, 7), id="Monday after Constitution Day on a Sunday (a substitute)"),
        pytest.param(date(2027, 8, 16), id="Monday after 15 August on a Sunday (a substitute)"),
    ],
)
def test_regional_local_movable_and_substitute_days_are_working_days(day):
    assert day.weekday() < 5
    assert periods_of_day(TD, day) == WORKING_2_0TD


def test_epiphany_counts_from_2022_as_gisce_enerdata_has_it():
    assert date(2022, 1, 6) in national_holidays(2022)
    assert date(2021, 1, 6) not in national_holidays(2021)


def test_the_23_hour_day_has_no_local_2am_and_keeps_p3_at_night():
    # Sunday 29 March 2026: clocks go from 02:00 to 03:00; a Sunday, so P3 for all 23 hours.
    assert periods_of_day(TD, date(2026, 3, 29)) == ["P3"] * 23
    # Monday 30 March: a full working day, local hours in CEST.
    assert periods_of_day(TD, date(2026, 3, 30)) == WORKING_2_0TD


def test_the_25_hour_day_counts_the_repeated_hour_twice_in_p3():
    # Sunday 25 October 2026: 02:00-03:00 happens twice. A Sunday: 25 hours of P3.
    assert periods_of_day(TD, date(2026, 10, 25)) == ["P3"] * 25
    # The working day after it (Monday 26 October, CET) is in its table again, hour for hour.
    assert periods_of_day(TD, date(2026, 10, 26)) == WORKING_2_0TD


def test_a_dst_change_on_a_working_day_keeps_every_local_hour_in_its_period():
    # 2027: clocks change on Sundays too (28 March, 31 October); check the UTC hours of the Monday after.
    first = local_midnight(date(2027, 3, 29), MADRID)
    assert first == datetime(2027, 3, 28, 22, tzinfo=UTC)  # CEST: local = UTC + 2
    assert TD.energy_period((first + 10 * HOUR).astimezone(zone(MADRID))) == "P1"  # local 10:00


def test_a_price_is_needed_for_every_period_and_for_nothing_else():
    with pytest.raises(ValueError, match="No price for P2"):
        parse_period_rates({"P1": "0.2", "P3": "0.1"}, TD.energy_periods, "EUR/kWh")
    with pytest.raises(ValueError, match="P4 is not a period"):
        parse_period_rates({"P1": "1", "P2": "1", "P3": "1", "P4": "1"}, TD.energy_periods, "EUR/kWh")
    with pytest.raises(ValueError, match="P1: must be a decimal number of EUR/kW/day"):
        parse_period_rates({"P1": "lots", "P2": "1"}, TD.power_periods, "EUR/kW/day")
    with pytest.raises(ValueError, match="Unknown calendar"):
        get_calendar("3.0TD")
