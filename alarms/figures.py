"""The numbers alarms watch, computed set-based for many households at once.

The dashboard may import the single-household helpers at the bottom (``recent_daily_cost``,
``days_of_balance_left``, ``month_projection``), so a card and an alarm never disagree.
Every figure is EUR in Decimal; local time is used only for day and month boundaries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Coalesce

from meters.models import HourlyUsage, Household, Meter
from meters.timeutil import HOUR, floor_hour, local_day_bounds, zone
from payments.models import PriceQuote, Settlement, Utxo
from payments.money import satoshis_to_eur
from payments.settlement import closed_period_end

ZERO = Decimal("0")
DAY = timedelta(days=1)
RECENT = timedelta(days=7)  # "the recent rate": the average daily cost over this window
FAILURE_WINDOW = timedelta(hours=24)
EUR_PLACES = Decimal("0.000001")
_SECONDS_PER_DAY = Decimal(86400)

Bounds = tuple[datetime, datetime]


def _eur(amount: Decimal | None) -> Decimal:
    # SQLite may hand an aggregate back with more digits than the column has.
    return (amount or ZERO).quantize(EUR_PLACES, rounding=ROUND_HALF_UP)


def local_month_bounds(moment: datetime, tz_name: str) -> Bounds:
    """The UTC instants at which the local calendar month containing ``moment`` starts and ends."""
    tz = zone(tz_name)
    local = moment.astimezone(tz)
    start = datetime(local.year, local.month, 1, tzinfo=tz)
    end = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


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
    rows = HourlyUsage.objects.filter(ranges).values("household_id").annotate(total=Sum("cost_eur"))
    return {row["household_id"]: _eur(row["total"]) for row in rows.order_by()}


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
        .annotate(cost=Sum("cost_eur"), kwh=Sum("kwh"))
        .order_by()
    )
    peaks: dict[int, tuple[Decimal, Decimal]] = {}
    for row in rows:
        cost, kwh = peaks.get(row["household_id"], (ZERO, ZERO))
        peaks[row["household_id"]] = (max(cost, _eur(row["cost"])), max(kwh, _eur(row["kwh"])))
    return peaks


def recent_daily_costs(household_ids: Iterable[int], now: datetime) -> dict[int, Decimal]:
    """Average EUR per day over the last 7 days, per household.

    A household younger than the window is averaged over the time since its first hour (at least a
    day), so a new household's rate is not diluted by days it did not exist.
    """
    window_start = now - RECENT
    rows = (
        HourlyUsage.objects.filter(household_id__in=household_ids, hour_start__gte=window_start, hour_start__lt=now)
        .values("household_id")
        .annotate(total=Sum("cost_eur"), first=Min("hour_start"))
        .order_by()
    )
    rates = {}
    for row in rows:
        seconds = Decimal(int((now - max(row["first"], window_start)).total_seconds()))
        days = max(seconds / _SECONDS_PER_DAY, Decimal(1))
        rates[row["household_id"]] = _eur(_eur(row["total"]) / days)
    return rates


def newest_quote(now: datetime) -> PriceQuote | None:
    """The quote payments.wallets.wallet_balance prices a balance at: the newest not from the future."""
    return PriceQuote.objects.filter(fetched_at__lte=now).order_by("-fetched_at", "-pk").first()


def balances_eur(household_ids: Iterable[int], now: datetime) -> dict[int, Decimal] | None:
    """Each household's wallet balance in EUR, or None without any price quote (never guess a price).

    The same figure as payments.wallets.wallet_balance (available coins at the newest quote), for many
    wallets in two queries instead of two per household; tests/alarms/test_figures.py holds them equal.
    A household without a wallet holds nothing.
    """
    quote = newest_quote(now)
    if quote is None:
        return None
    ids = list(household_ids)
    coins = (
        Utxo.objects.filter(wallet__household_id__in=ids, state=Utxo.State.AVAILABLE)
        .values("wallet__household_id")
        .annotate(total=Sum("satoshis"))
        .order_by()
    )
    satoshis = {row["wallet__household_id"]: row["total"] or 0 for row in coins}
    return {pk: satoshis_to_eur(int(satoshis.get(pk, 0)), quote.bsv_eur) for pk in ids}


def days_left(balance: Decimal, daily: Decimal) -> Decimal | None:
    """How many days ``balance`` lasts at ``daily`` EUR a day; None when nothing is being spent."""
    if daily <= 0:
        return None
    return (max(balance, ZERO) / daily).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def projection(so_far: Decimal, daily: Decimal, now: datetime, month_end: datetime) -> Decimal:
    """The month so far plus the rest of it at the recent daily rate.

    Not "so far / elapsed * length": an hour into the month that would multiply one hour's use by
    seven hundred, and fire every projected-month alarm on the 1st.
    """
    remaining = Decimal(int(max(month_end - now, timedelta(0)).total_seconds())) / _SECONDS_PER_DAY
    return _eur(so_far + daily * remaining)


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
    cutoff = closed_period_end(now) - HOUR
    failed = (
        Settlement.objects.filter(
            household_id__in=ids, state__in=Settlement.FAILED, updated_at__gte=now - FAILURE_WINDOW
        )
        .values("household_id")
        .annotate(n=Count("pk"))
        .order_by()
    )
    overdue = (
        HourlyUsage.objects.filter(
            household_id__in=ids, hour_start__lt=cutoff, settled_at__isnull=True, cost_eur__isnull=False
        )
        .values("household_id")
        .annotate(total=Sum("cost_eur"))
        .order_by()
    )
    trouble: dict[int, tuple[int, Decimal, datetime]] = {}
    for row in failed:
        trouble[row["household_id"]] = (row["n"], ZERO, cutoff)
    for row in overdue:
        total = _eur(row["total"])
        if total > 0:
            refused, _, _ = trouble.get(row["household_id"], (0, ZERO, cutoff))
            trouble[row["household_id"]] = (refused, total, cutoff)
    return trouble


# --- One household, for pages ------------------------------------------------------------------


def recent_daily_cost(household: Household, now: datetime) -> Decimal:
    """Average EUR per day over the last 7 days: "the recent rate"."""
    return recent_daily_costs([household.pk], now).get(household.pk, ZERO)


def days_of_balance_left(household: Household, now: datetime) -> Decimal | None:
    """Days the wallet's balance lasts at the recent rate (one decimal); None without a price or without use."""
    balances = balances_eur([household.pk], now)
    if balances is None:
        return None
    return days_left(balances[household.pk], recent_daily_cost(household, now))


def month_projection(household: Household, now: datetime) -> Decimal:
    """This local month's cost so far plus the rest of the month at the recent rate."""
    _, month_end = local_month_bounds(now, household.timezone)
    so_far = month_costs([household], now).get(household.pk, ZERO)
    return projection(so_far, recent_daily_cost(household, now), now, month_end)
