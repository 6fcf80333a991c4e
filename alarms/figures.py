"""The numbers alarms watch, computed set-based for many households at once.

Every figure is EUR in Decimal; local time is used only for day and month boundaries.

The figures a household also sees on its dashboard cards are defined once, here, by the pure
functions ``recent_window``, ``daily_rate``, ``days_left`` and ``projection``. The alarms feed them
from set-based queries (``recent_daily_costs``, ``owed_costs``, ``month_costs``, ``balances_eur``),
the dashboard from its one aggregate query (energypay/dashboard.py); either way the arithmetic and
the window are these, so a card and an alarm evaluated at the same moment on the same data agree:

- The recent rate: EUR a day over the last 7 days of *closed* hours, [floor_hour(now) - 7 days,
  floor_hour(now)). The current hour is partial (its readings are still arriving), so counting it
  would make the rate jump with every reading. A household younger than the window is averaged
  over the days since its first line in it, but over at least one day, so its first expensive
  hour is not taken for a whole day of them. No line in the window: no rate (None).
- Days of balance left: (wallet balance - what is owed) / recent rate, where owed is priced usage
  not yet settled (arrears and the hours the next run will pay), which the balance pays first.
  Whole days, rounded down: the card shows this number and the "balance lasts N days or less"
  alarm compares this same number, so a card saying "4 days" goes with a 4-day alarm going off.
  (Comparing the unrounded 4.5 would leave that alarm quiet beside a card saying 4.) None when
  nothing is being spent.
- Month projected: this local month so far + recent rate x the time left in the month, to the
  cent (as the card shows it and as an alarm threshold is written). Without a recent rate, nothing
  more is expected: the projection is the month so far, never less than what was already spent.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Coalesce

from meters import timeutil
from meters.models import HourlyUsage, Household, Meter
from meters.timeutil import HOUR, floor_hour, local_day_bounds
from payments.models import PriceQuote, Settlement, Utxo
from payments.money import satoshis_to_eur
from payments.settlement import closed_period_end

ZERO = Decimal("0")
DAY = timedelta(days=1)
RECENT = timedelta(days=7)  # "the recent rate": the average daily cost over this window
FAILURE_WINDOW = timedelta(hours=24)
EUR_PLACES = Decimal("0.000001")
CENT = Decimal("0.01")
_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_A_DAY = Decimal(86_400_000_000)

Bounds = tuple[datetime, datetime]


def _eur(amount: Decimal | None) -> Decimal:
    # SQLite may hand an aggregate back with more digits than the column has.
    return (amount or ZERO).quantize(EUR_PLACES, rounding=ROUND_HALF_UP)


def local_month_bounds(moment: datetime, tz_name: str) -> Bounds:
    """The UTC instants at which the local calendar month containing ``moment`` starts and ends."""
    return timeutil.local_month_bounds(timeutil.local_date(moment, tz_name), tz_name)


# Priced usage not settled yet, whatever its hour: what the balance must pay first. The partial
# index usage_open_lines serves it.
OWED = Q(settled_at__isnull=True, cost_eur__isnull=False)


def arrears_cutoff(now: datetime) -> datetime:
    """Unpaid hours starting before this are in arrears: the last settlement run should have paid them.

    closed_period_end(now) less an hour of slack for a run still working.
    """
    return closed_period_end(now) - HOUR


def in_arrears(now: datetime) -> Q:
    """Usage lines in arrears at ``now``: the dashboard's card, the alarms, /healthz and the status page count these."""
    return OWED & Q(hour_start__lt=arrears_cutoff(now))


def _days(span: timedelta) -> Decimal:
    """A span in days, exactly (whole microseconds, never through a float)."""
    return Decimal(span // _MICROSECOND) / _MICROSECONDS_A_DAY


# --- The shared definitions (see the module docstring): pure arithmetic, no queries -----------------


def recent_window(now: datetime) -> Bounds:
    """The hours the recent rate averages: the last 7 days of closed hours before ``now``, [start, end)."""
    end = floor_hour(now)
    return end - RECENT, end


def daily_rate(total_eur: Decimal | None, first_hour: datetime | None, window: Bounds) -> Decimal | None:
    """EUR a day: ``total_eur`` spent in ``window`` over the days from its first line to the window's end.

    ``first_hour`` is the earliest hour_start of a line in the window (priced or not), None when
    there is none: then there is no rate. The divisor is at least one day.
    """
    if first_hour is None:
        return None
    start, end = window
    return _eur(total_eur) / max(_days(end - max(start, first_hour)), Decimal(1))


def days_left(balance_eur: Decimal, owed_eur: Decimal | None, daily: Decimal | None) -> Decimal | None:
    """Whole days (rounded down) the balance lasts at ``daily`` after paying what is owed; None without spending.

    A balance that does not cover what is owed lasts 0 days.
    """
    if daily is None or daily <= 0:
        return None
    spare = max(balance_eur - _eur(owed_eur), ZERO)
    return (spare / daily).to_integral_value(rounding=ROUND_FLOOR)


def projection(so_far_eur: Decimal | None, daily: Decimal | None, now: datetime, month_end: datetime) -> Decimal:
    """The month so far plus the rest of it at the recent rate, to the cent; the month so far without a rate.

    Not "so far / elapsed * length": an hour into the month that would multiply one hour's use by
    seven hundred, and fire every projected-month alarm on the 1st.
    """
    rest = (daily or ZERO) * _days(max(month_end - now, timedelta(0)))
    return (_eur(so_far_eur) + rest).quantize(CENT, rounding=ROUND_HALF_UP)


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


def recent_daily_costs(household_ids: Iterable[int], now: datetime) -> dict[int, Decimal | None]:
    """The recent rate (``daily_rate`` over ``recent_window``) per household; absent without a line in the window."""
    window = recent_window(now)
    rows = (
        HourlyUsage.objects.filter(household_id__in=household_ids, hour_start__gte=window[0], hour_start__lt=window[1])
        .values("household_id")
        .annotate(total=Sum("cost_eur"), first=Min("hour_start"))
        .order_by()
    )
    return {row["household_id"]: daily_rate(row["total"], row["first"], window) for row in rows}


def owed_costs(household_ids: Iterable[int]) -> dict[int, Decimal]:
    """Per household, priced usage not settled yet, whatever its hour: what the balance must pay first.

    The partial index usage_open_lines serves this (it is the dashboard's "owed" too).
    """
    rows = (
        HourlyUsage.objects.filter(OWED, household_id__in=household_ids)
        .values("household_id")
        .annotate(total=Sum("cost_eur"))
        .order_by()
    )
    return {row["household_id"]: _eur(row["total"]) for row in rows}


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
