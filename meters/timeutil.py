"""Hour arithmetic in UTC and in a household's local time. Framework-free.

Usage is stored per UTC hour; local time is used only to find which local day or band an hour
belongs to, so 23- and 25-hour days come out right.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
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


def local_day_bounds(hour: datetime, tz_name: str) -> tuple[datetime, datetime]:
    """The UTC instants at which the local calendar day containing ``hour`` starts and ends."""
    tz = zone(tz_name)
    day = hour.astimezone(tz).date()
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)
