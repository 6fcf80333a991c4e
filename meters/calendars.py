"""Tariff calendars: which named period (P1, P2, P3) a local hour belongs to. No database.

A calendar is built in, as the regulation fixes it: the access tariff 2.0TD of CNMC Circular 3/2020
(art. 7; docs/spain.md), for the peninsula, the Balearic and Canary Islands, and its variant for
Ceuta and Melilla. A tariff version of kind "periods" names a calendar and prices each of its
energy periods (EUR/kWh) and, optionally, each of its power periods (EUR/kW/day).

Hours are the household's local clock hours: a UTC hour of a zone with a whole-hour offset is one
local hour, so on the 23- and 25-hour days of DST each UTC hour still falls in exactly one period
(the repeated 02:00 of the last Sunday of October is a Sunday: P3 twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache

from meters.bands import parse_rate

# The national holidays with a fixed date that are not substitutable by the autonomous
# communities, plus 6 January: on these, every hour is in the cheapest period (docs/spain.md).
# Good Friday (no fixed date), regional and local holidays and the Mondays that replace a holiday
# falling on a Sunday do not count.
FIXED_HOLIDAYS: tuple[tuple[int, int, str], ...] = (
    (1, 1, "Año Nuevo"),
    (1, 6, "Epifanía del Señor"),
    (5, 1, "Fiesta del Trabajo"),
    (8, 15, "Asunción de la Virgen"),
    (10, 12, "Fiesta Nacional de España"),
    (11, 1, "Todos los Santos"),
    (12, 6, "Día de la Constitución Española"),
    (12, 8, "Inmaculada Concepción"),
    (12, 25, "Natividad del Señor"),
)
# 6 January counts from 2022 on (gisce/enerdata's REECalendar, docs/spain.md); before, it did not.
EPIPHANY_FROM_YEAR = 2022


@cache
def national_holidays(year: int) -> dict[date, str]:
    """The holidays of ``year`` on which a 2.0TD day is all P3, with their names."""
    return {
        date(year, month, day): name
        for month, day, name in FIXED_HOLIDAYS
        if not (month == 1 and day == 6 and year < EPIPHANY_FROM_YEAR)
    }


def is_holiday(day: date) -> bool:
    return day in national_holidays(day.year)


def _hours(*spans: tuple[int, int, str]) -> tuple[str, ...]:
    """24 period names, one per local hour, from (start, end, period) spans covering 0-24 once."""
    hours: list[str | None] = [None] * 24
    for start, end, period in spans:
        for hour in range(start, end):
            assert hours[hour] is None, f"hour {hour} in two periods"
            hours[hour] = period
    assert None not in hours, "every hour needs a period"
    return tuple(hours)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Calendar:
    code: str
    label: str
    energy_periods: tuple[str, ...]
    power_periods: tuple[str, ...]
    working_energy: tuple[str, ...]  # per local hour of a working day (Monday to Friday, not a holiday)
    rest_energy: str  # every hour of Saturdays, Sundays and holidays
    working_power: tuple[str, ...]
    rest_power: str

    def is_working_day(self, day: date) -> bool:
        return day.weekday() < 5 and not is_holiday(day)

    def energy_period(self, local: datetime) -> str:
        """The energy period of a local time (an aware datetime in the household's zone)."""
        return self.working_energy[local.hour] if self.is_working_day(local.date()) else self.rest_energy

    def power_period(self, local: datetime) -> str:
        return self.working_power[local.hour] if self.is_working_day(local.date()) else self.rest_power


# Power periods of 2.0TD: P1 8-24 on working days, P2 the rest (the same in Ceuta and Melilla).
_POWER_2_0TD = _hours((0, 8, "P2"), (8, 24, "P1"))

CALENDARS: dict[str, Calendar] = {
    calendar.code: calendar
    for calendar in (
        Calendar(
            code="2.0TD",
            label="2.0TD (peninsula, Balearic and Canary Islands)",
            energy_periods=("P1", "P2", "P3"),
            power_periods=("P1", "P2"),
            working_energy=_hours(
                (0, 8, "P3"), (8, 10, "P2"), (10, 14, "P1"), (14, 18, "P2"), (18, 22, "P1"), (22, 24, "P2")
            ),
            rest_energy="P3",
            working_power=_POWER_2_0TD,
            rest_power="P2",
        ),
        Calendar(
            code="2.0TD-CM",
            label="2.0TD, Ceuta and Melilla",
            energy_periods=("P1", "P2", "P3"),
            power_periods=("P1", "P2"),
            working_energy=_hours(
                (0, 8, "P3"), (8, 11, "P2"), (11, 15, "P1"), (15, 19, "P2"), (19, 23, "P1"), (23, 24, "P2")
            ),
            rest_energy="P3",
            working_power=_POWER_2_0TD,
            rest_power="P2",
        ),
    )
}
CALENDAR_CHOICES = [(calendar.code, calendar.label) for calendar in CALENDARS.values()]


def get_calendar(code: str) -> Calendar:
    try:
        return CALENDARS[code]
    except KeyError:
        raise ValueError(f"Unknown calendar {code!r}: choose one of {', '.join(CALENDARS)}.") from None


def parse_period_rates(raw: object, periods: tuple[str, ...], unit: str) -> dict[str, Decimal]:
    """A price for every period of ``periods`` and for nothing else, as staff typed them, or ValueError."""
    if not isinstance(raw, dict):
        raise ValueError(f"Give a price in {unit} for each of {', '.join(periods)}.")
    missing = [period for period in periods if raw.get(period) in (None, "")]
    if missing:
        needed = ", ".join(periods)
        raise ValueError(f"No price for {', '.join(missing)}: every period ({needed}) needs one, in {unit}.")
    unknown = sorted(set(raw) - set(periods))
    if unknown:
        raise ValueError(f"{', '.join(map(str, unknown))} is not a period of this calendar ({', '.join(periods)}).")
    rates = {}
    for period in periods:
        try:
            rates[period] = parse_rate(raw[period], unit=unit)
        except ValueError as error:
            raise ValueError(f"{period}: {error}.") from None
    return rates
