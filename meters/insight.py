"""A price-aware hint from the household's own usage and tariff: what moving its costliest hours would save.

For each local day of a stretch of time, take the day's 3 hours whose energy cost most (the ledger's
own cost, as billed) and pretend their kWh had been used in that day's 3 cheapest hours (the
tariff's price of each hour of the day, used or not): the most expensive hour moves to the cheapest
price, the second to the second cheapest, and so on. What that would have saved, with the taxes on
energy the hour carries (``HourlyUsage.tax_rate``), summed over the days and rounded to the cent, is
the hint. A move that would not save (the hour already is among the cheapest) counts as nothing.

Only a tariff whose price varies within a day has a hint: a flat tariff (or a day whose hours all
cost the same) has nowhere cheaper to move to, and ``shift_saving`` answers None rather than "0 €".
Lines waiting for a price (``cost_eur`` null) are left out, as in every money figure.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import Max, Sum

from lib.money import round_cent
from lib.periods import ceil_hour, hours_between, local_date, local_midnight
from meters.models import HourlyUsage, Household
from meters.pricing import HouseholdSchedule

MOVED_HOURS = 3
ZERO = Decimal("0")


@dataclass(frozen=True)
class ShiftHint:
    saving_eur: Decimal  # to the cent; zero when the costliest hours already are the cheapest
    hours: int = MOVED_HOURS


@dataclass(frozen=True)
class _Hour:
    kwh: Decimal
    cost: Decimal
    tax_rate: Decimal


def shift_saving(household: Household, start: datetime, end: datetime) -> ShiftHint | None:
    """The hint for the household's usage in [start, end) (UTC, ``start`` a local midnight); None when
    the tariff never varies within one of those days.

    Steps: the tariff's price of every hour of each local day touched (no query for a time-of-use
    tariff, one for a dynamic one's prices); stop if no day has two different prices; read the
    priced energy per UTC hour (one query); per day, pair the costliest hours with the cheapest
    prices and add up what each move saves.
    """
    tz_name = household.timezone
    days = _local_days(start, end, tz_name)
    if not days:
        return None
    first, stop = local_midnight(days[0], tz_name), local_midnight(days[-1] + timedelta(days=1), tz_name)
    schedule = HouseholdSchedule(household, first, stop)
    prices: dict[date, list[Decimal]] = {}
    for day in days:
        day_start, day_end = local_midnight(day, tz_name), local_midnight(day + timedelta(days=1), tz_name)
        rates = [schedule.energy_rate(hour)[1] for hour in hours_between(ceil_hour(day_start), day_end)]
        prices[day] = sorted(rate for rate in rates if rate is not None)
    if not any(day_prices and day_prices[0] != day_prices[-1] for day_prices in prices.values()):
        return None

    by_day: dict[date, list[_Hour]] = defaultdict(list)
    for row in _priced_energy(household, start, end):
        by_day[local_date(row["hour_start"], tz_name)].append(_Hour(row["kwh"], row["cost"], row["tax_rate"]))
    saving = ZERO
    for day, hours in by_day.items():
        cheapest = prices.get(day, [])[:MOVED_HOURS]
        costliest = sorted(hours, key=lambda hour: hour.cost, reverse=True)[:MOVED_HOURS]
        for hour, price in zip(costliest, cheapest, strict=False):
            saved = hour.cost - hour.kwh * price
            if saved > 0:
                saving += saved * (1 + hour.tax_rate)
    return ShiftHint(round_cent(saving))


def _local_days(start: datetime, end: datetime, tz_name: str) -> list[date]:
    if end <= start:
        return []
    first, last = local_date(start, tz_name), local_date(end - timedelta(microseconds=1), tz_name)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _priced_energy(household: Household, start: datetime, end: datetime):
    """Priced energy per UTC hour: kWh and cost over meters and lines, and the hour's energy tax factor."""
    return (
        HourlyUsage.objects.filter(
            household=household,
            kind=HourlyUsage.Kind.ENERGY,
            hour_start__gte=start,
            hour_start__lt=end,
            cost_eur__isnull=False,
        )
        .order_by()
        .values("hour_start")
        .annotate(kwh=Sum("kwh"), cost=Sum("cost_eur"), tax_rate=Max("tax_rate"))
    )
