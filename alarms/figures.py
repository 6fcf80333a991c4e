"""The figures only alarms watch, computed set-based for many households at once.

The money words (owed, arrears, balance, the recent rate, days left, the month projected) are
payments/figures.py's, shared with the dashboard and the admin; here are the rest: a local day's
and month's cost, the peaks of the last two hours, silent meters, refused and overdue payments.
Every figure is EUR in Decimal; local time is used only for day and month boundaries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Coalesce

from lib import periods
from lib.periods import HOUR, floor_hour, local_day_bounds
from meters.models import HourlyUsage, Household, Meter
from payments.figures import ZERO, Bounds, arrears_cutoff, eur, in_arrears, line_amount
from payments.models import Settlement

FAILURE_WINDOW = timedelta(hours=24)


def local_month_bounds(moment: datetime, tz_name: str) -> Bounds:
    """The UTC instants at which the local calendar month containing ``moment`` starts and ends."""
    return periods.local_month_bounds(periods.local_date(moment, tz_name), tz_name)


def period_costs(households: Iterable[Household], bounds: Callable[[str], Bounds]) -> dict[int, Decimal]:
    """EUR per household over a local period (its day, its month): one query, one range per time zone."""
    by_bounds: defaultdict[Bounds, list[int]] = defaultdict(list)
    for household in households:
        by_bounds[bounds(household.timezone)].append(household.pk)
    if not by_bounds:
        return {}
    ranges = Q()
    for (start, end), ids in by_bounds.items():
        ranges |= Q(household_id__in=ids, hour_start__gte=start, hour_start__lt=end)
    rows = HourlyUsage.objects.filter(ranges).values("household_id").annotate(total=Sum(line_amount()))
    return {row["household_id"]: eur(row["total"]) for row in rows.order_by()}


def day_costs(households: Iterable[Household], now: datetime) -> dict[int, Decimal]:
    return period_costs(households, lambda tz: local_day_bounds(now, tz))


def month_costs(households: Iterable[Household], now: datetime) -> dict[int, Decimal]:
    return period_costs(households, lambda tz: local_month_bounds(now, tz))


def hour_peaks(household_ids: Iterable[int], now: datetime) -> dict[int, tuple[Decimal, Decimal]]:
    """Per household, the highest EUR and the highest kWh of the current hour and the one before.

    Two hours, not one: a run of expensive hours stays one condition (fired once, not once per
    hour), and it clears once a whole hour has stayed below the threshold.
    """
    current = floor_hour(now)
    rows = (
        HourlyUsage.objects.filter(
            household_id__in=household_ids, hour_start__gte=current - HOUR, hour_start__lte=current
        )
        .values("household_id", "hour_start")
        .annotate(cost=Sum(line_amount()), kwh=Sum("kwh"))
        .order_by()
    )
    peaks: dict[int, tuple[Decimal, Decimal]] = {}
    for row in rows:
        cost, kwh = peaks.get(row["household_id"], (ZERO, ZERO))
        peaks[row["household_id"]] = (max(cost, eur(row["cost"])), max(kwh, eur(row["kwh"])))
    return peaks


def silent_hours(household_ids: Iterable[int], now: datetime) -> dict[int, Decimal]:
    """Per household, how long its quietest active meter has not been heard from, in hours.

    A meter never heard from counts from when it was added. Hours are real (UTC) hours: across a
    daylight-saving change, 3 hours of silence are 3 hours whatever the wall clock says.
    """
    rows = (
        Meter.objects.filter(household_id__in=household_ids, is_active=True)
        .values("household_id")
        .annotate(oldest=Min(Coalesce("last_seen_at", "created_at")))
        .order_by()
    )
    return {
        row["household_id"]: (Decimal(int((now - row["oldest"]).total_seconds())) / 3600).quantize(Decimal("0.01"))
        for row in rows
    }


def payment_trouble(household_ids: Iterable[int], now: datetime) -> dict[int, tuple[int, Decimal, datetime]]:
    """Per household in trouble: payments refused in the last 24 hours, EUR overdue, and the cutoff.

    Overdue: priced usage still unpaid for hours that ended more than an hour before the last closed
    hour, i.e. that at least one hourly run should have paid. Zero-cost lines are never overdue.
    """
    ids = list(household_ids)
    cutoff = arrears_cutoff(now)
    failed = (
        Settlement.objects.filter(
            household_id__in=ids, state__in=Settlement.FAILED, updated_at__gte=now - FAILURE_WINDOW
        )
        .values("household_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    overdue = (
        HourlyUsage.objects.filter(in_arrears(now), household_id__in=ids)
        .values("household_id")
        .annotate(total=Sum(line_amount()))
        .order_by()
    )
    trouble: dict[int, tuple[int, Decimal, datetime]] = {}
    for row in failed:
        trouble[row["household_id"]] = (row["n"], ZERO, cutoff)
    for row in overdue:
        total = eur(row["total"])
        if total > 0:
            refused, _, _ = trouble.get(row["household_id"], (0, ZERO, cutoff))
            trouble[row["household_id"]] = (refused, total, cutoff)
    return trouble
