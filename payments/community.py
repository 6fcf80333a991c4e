"""The community comparison: a household's average day against the average of all households.

An average day is, for each local hour of the day (0..23), the mean kWh and EUR of the household's
energy lines in that hour over the last 30 days: the sum of its lines at that hour divided by the
number of distinct hours it has lines for (an hour without readings is unknown, not zero). The
community average at an hour is the mean of the households' own averages, so each household counts
once however long its history. Hours of day are each household's own local hours: the hour
expression picks the household's zone (one CASE branch per zone in use; there are few).

Privacy: an hour of the community day is shown only when at least COMMUNITY_MIN_HOUSEHOLDS
households contribute to it; below that no value (nor the count) leaves this module.

Everything is aggregated in SQL: per (household, local hour) in the inner query, per local hour in
the outer one; Python sees 24 rows. The community part is the same for everyone within an hour, so
it is cached per UTC hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.db.models import Case, Count, Expression, IntegerField, QuerySet, Sum, When
from django.db.models.functions import ExtractHour

from lib.money import EUR_PLACES
from lib.periods import floor_hour
from meters.models import HourlyUsage, Household

WINDOW = timedelta(days=30)
PLACES = EUR_PLACES  # means of EUR and of kWh, to the six places usage lines carry
CACHE_SECONDS = 15 * 60
HOURS = range(24)


@dataclass(frozen=True)
class Hour:
    """One hour of an average day. ``kwh`` and ``eur`` are None when unknown or hidden."""

    hour: int
    kwh: Decimal | None
    eur: Decimal | None
    households: int | None = None  # community only; None when hidden

    @property
    def label(self) -> str:
        return f"{self.hour:02d}:00-{(self.hour + 1) % 24:02d}:00"


@dataclass(frozen=True)
class Comparison:
    since: datetime
    until: datetime
    household: list[Hour]
    community: list[Hour]
    min_households: int

    @property
    def rows(self) -> list[tuple[Hour, Hour]]:
        return list(zip(self.household, self.community, strict=True))

    @property
    def hidden_hours(self) -> int:
        return sum(1 for hour in self.community if hour.kwh is None)


def window(now: datetime) -> tuple[datetime, datetime]:
    """The last 30 days of closed hours: [since, until) in UTC."""
    until = floor_hour(now)
    return until - WINDOW, until


def comparison(household: Household, now: datetime) -> Comparison:
    since, until = window(now)
    return Comparison(
        since=since,
        until=until,
        household=household_day(household, now),
        community=community_day(now),
        min_households=settings.COMMUNITY_MIN_HOUSEHOLDS,
    )


def household_day(household: Household, now: datetime) -> list[Hour]:
    """The household's own average day: one query, 24 rows at most."""
    since, until = window(now)
    rows = (
        _energy(since, until)
        .filter(household=household)
        .annotate(local_hour=ExtractHour("hour_start", tzinfo=_zone(household.timezone)))
        .values("local_hour")
        .annotate(kwh_sum=Sum("kwh"), eur_sum=Sum("cost_eur"), hours=Count("hour_start", distinct=True))
        .order_by()
    )
    by_hour = {
        row["local_hour"]: Hour(
            row["local_hour"],
            _mean(row["kwh_sum"], row["hours"]),
            _mean(row["eur_sum"], row["hours"]) if row["eur_sum"] is not None else None,
        )
        for row in rows
    }
    return [by_hour.get(hour) or Hour(hour, None, None) for hour in HOURS]


def community_day(now: datetime) -> list[Hour]:
    """All households' average day, hours with too few households hidden; cached per UTC hour."""
    since, until = window(now)
    key = f"community-day:{until:%Y%m%d%H}:{settings.COMMUNITY_MIN_HOUSEHOLDS}"
    cached = cache.get(key)
    if cached is None:
        cached = _community_day(since, until)
        cache.set(key, cached, CACHE_SECONDS)
    return cached


def _community_day(since: datetime, until: datetime) -> list[Hour]:
    zones = sorted(Household.objects.order_by().values_list("timezone", flat=True).distinct())
    if not zones:
        return [Hour(hour, None, None) for hour in HOURS]
    per_household = (
        _energy(since, until)
        .annotate(local_hour=_local_hour(zones))
        .values("household_id", "local_hour")
        .annotate(kwh_sum=Sum("kwh"), eur_sum=Sum("cost_eur"), hours=Count("hour_start", distinct=True))
        .order_by()
    )
    inner, params = per_household.query.sql_with_params()
    # "* 1.0": SQLite would otherwise divide integer-valued sums as integers (PostgreSQL keeps numeric).
    sql = f"""
        SELECT local_hour, COUNT(*), SUM(kwh_sum * 1.0 / hours),
               SUM(CASE WHEN eur_sum IS NULL THEN NULL ELSE eur_sum * 1.0 / hours END), COUNT(eur_sum)
          FROM ({inner}) per_household
         GROUP BY local_hour
    """  # noqa: S608 (the inner query is Django's, with its values as parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    minimum = settings.COMMUNITY_MIN_HOUSEHOLDS
    by_hour = {}
    for hour, households, kwh_total, eur_total, priced in rows:
        if hour is None or households < minimum:
            continue  # privacy: nothing about a small bucket is kept, not even its size
        eur = _mean(_decimal(eur_total), priced) if priced else None
        by_hour[int(hour)] = Hour(int(hour), _mean(_decimal(kwh_total), households), eur, households)
    return [by_hour.get(hour) or Hour(hour, None, None) for hour in HOURS]


def _energy(since: datetime, until: datetime) -> QuerySet[HourlyUsage]:
    # Standing charges are no one's behaviour: only energy lines say when a household uses power.
    return HourlyUsage.objects.filter(kind=HourlyUsage.Kind.ENERGY, hour_start__gte=since, hour_start__lt=until)


def _local_hour(zones: list[str]) -> Expression:
    if len(zones) == 1:
        return ExtractHour("hour_start", tzinfo=_zone(zones[0]))
    return Case(
        *[When(household__timezone=name, then=ExtractHour("hour_start", tzinfo=_zone(name))) for name in zones],
        output_field=IntegerField(),
    )


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")  # Household.timezone is validated; this only keeps a bad row from breaking the page


def _decimal(value: Decimal | float | int | None) -> Decimal:
    # PostgreSQL returns numeric (Decimal); SQLite a float, whose shortest repr is what it meant.
    if value is None:
        return Decimal(0)
    return value if isinstance(value, Decimal) else Decimal(repr(value))


def _mean(total: Decimal | int | None, count: int) -> Decimal:
    return (Decimal(total or 0) / count).quantize(PLACES, rounding=ROUND_HALF_UP)
