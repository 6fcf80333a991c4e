"""Hour arithmetic in UTC and in a household's local time. Framework-free.

Usage is stored per UTC hour; local time is used only to find which local day or band an hour
belongs to, so 23- and 25-hour days come out right.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

HOUR = timedelta(hours=1)


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@cache
def timezone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def floor_hour(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floored = floor_hour(moment)
    return floored if floored == moment else floored + HOUR


def hours_between(start: datetime, end: datetime) -> list[datetime]:
    """UTC hour starts h with start <= h < end; start must be on the hour."""
    hours = []
    hour = start
    while hour < end:
        hours.append(hour)
        hour += HOUR
    return hours


def local_midnight(day: date, tz_name: str) -> datetime:
    """The UTC instant a local calendar day starts.

    Where a zone skips midnight (a DST gap at 00:00), fold=0 takes the offset before the gap, which
    lands on the instant the day really begins.
    """
    return datetime(day.year, day.month, day.day, tzinfo=zone(tz_name)).astimezone(UTC)


def local_date(moment: datetime, tz_name: str) -> date:
    return moment.astimezone(zone(tz_name)).date()


def first_of_month(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def local_day_bounds(hour: datetime, tz_name: str) -> tuple[datetime, datetime]:
    """The UTC instants at which the local calendar day containing ``hour`` starts and ends."""
    day = local_date(hour, tz_name)
    return local_midnight(day, tz_name), local_midnight(day + timedelta(days=1), tz_name)


def local_month_bounds(day: date, tz_name: str) -> tuple[datetime, datetime]:
    """The UTC instants at which the local month containing ``day`` starts and ends."""
    return local_midnight(first_of_month(day), tz_name), local_midnight(add_months(day, 1), tz_name)
