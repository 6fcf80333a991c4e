"""The money words, each defined once: every page, admin column, health check and alarm uses these.

- **closed**: the last hour the hourly run settles, ``closed_period_end(now)`` (HH:05 by default
  for the hour before; the grace leaves time for late readings).
- **a line's amount**: its cost plus its taxes (``line_amount()``), what settlement pays for it and
  what every figure of money owed, paid or spent below adds up (docs/billing.md).
- **owed**: priced usage lines not settled yet (``owed()``; ``owed(before=...)`` for the hours
  before an instant). What a wallet's balance pays first. A line waiting for its price is not owed
  yet: nobody can pay an amount that is not known.
- **arrears**: owed lines of hours that closed before ``arrears_cutoff(now)``, i.e. that a run at
  least an hour ago should have paid. One cutoff for the admin, the status page, /healthz, the
  dashboard and the alarms, so no two screens disagree about it at any moment; the hour of slack
  leaves a run still working through its chunks (they start at HH:05) to finish before anyone is
  called late.
- **the newest quote**: the newest ``PriceQuote`` not stamped after ``now + CLOCK_SKEW``; a quote
  from further ahead comes from a wrong clock and is refused everywhere. **The usable quote** is
  the newest one if it is at most ``PRICE_MAX_AGE`` old: settlement prices with it, /healthz
  checks for it. Pages price balances at the newest quote even when stale, and say how old it is.
- **balance**: a wallet's available coins (in-flight change included, coins reserved by a payment
  in flight not), in EUR at the newest quote; ``wallet_balance`` for one home, ``balances_eur``
  for many at once (the same figure, tests/alarms/test_figures.py holds them equal).
  ``balances_at`` is the balance at a past instant (a statement's month end), from the coins' history.
- **the recent rate** (EUR a day), **days left** and **the month projected**: pure arithmetic
  over ``recent_window``, fed by the dashboard's one aggregate or by ``recent_daily_costs`` for
  many households; so a card and an alarm evaluated at the same moment agree.

  - The recent rate: EUR a day over the last 7 days of *closed* hours, [floor_hour(now) - 7 days,
    floor_hour(now)). The current hour is partial (its readings are still arriving), so counting it
    would make the rate jump with every reading. A household younger than the window is averaged
    over the days since its first line in it, but over at least one day, so its first expensive
    hour is not taken for a whole day of them. No line in the window: no rate (None).
  - Days left: (balance - owed) / recent rate, in whole days rounded down: the card shows this
    number and the "balance lasts N days or less" alarm compares this same number, so a card
    saying "4 days" goes with a 4-day alarm going off. None when nothing is being spent.
  - Month projected: this local month so far + recent rate x the time left in the month, to the
    cent. Without a recent rate, nothing more is expected: the projection is the month so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import DecimalField, ExpressionWrapper, F, Min, Q, Sum, Value
from django.db.models.functions import Coalesce

from lib.money import EUR_PLACES, satoshis_to_eur
from lib.periods import HOUR, floor_hour
from meters.models import HourlyUsage
from payments.models import PriceQuote, Utxo, Wallet
from payments.wallets import balance_satoshis

ZERO = Decimal("0")
CENT = Decimal("0.01")
RECENT = timedelta(days=7)  # "the recent rate": the average daily cost over this window
# Quotes are stamped by the fetching machine's clock; another machine's may run a little ahead.
CLOCK_SKEW = timedelta(minutes=1)
_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_A_DAY = Decimal(86_400_000_000)

Bounds = tuple[datetime, datetime]


def eur(amount: Decimal | None) -> Decimal:
    """An EUR sum in micro-euros, 0 for none: SQLite may hand an aggregate back with more digits (a float)."""
    return (amount or ZERO).quantize(EUR_PLACES, rounding=ROUND_HALF_UP)


# --- Owed and arrears -----------------------------------------------------------------------------


def line_amount() -> ExpressionWrapper:
    """What a usage line costs the household: its cost plus its taxes (none recorded: none).

    The one expression settlement sums and pays, and every owed, arrears and spent figure sums.
    """
    amount = F("cost_eur") + Coalesce("tax_eur", Value(ZERO))
    return ExpressionWrapper(amount, output_field=DecimalField(max_digits=16, decimal_places=6))


def closed_period_end(now: datetime) -> datetime:
    """End of the last hour that is closed, counting the grace for late readings (HH:05 by default)."""
    return floor_hour(now - timedelta(minutes=settings.SETTLEMENT_GRACE_MINUTES))


def owed(before: datetime | None = None) -> Q:
    """Usage lines priced and not settled yet (of hours starting before ``before``, if given).

    The partial index usage_open_lines serves it.
    """
    lines = Q(settled_at__isnull=True, cost_eur__isnull=False)
    return lines if before is None else lines & Q(hour_start__lt=before)


def arrears_cutoff(now: datetime) -> datetime:
    """Owed hours starting before this are in arrears: a run at least an hour ago should have paid them.

    closed_period_end(now) less an hour of slack for a run still working.
    """
    return closed_period_end(now) - HOUR


def in_arrears(now: datetime) -> Q:
    """Usage lines in arrears at ``now``."""
    return owed(before=arrears_cutoff(now))


def owed_costs(household_ids: Iterable[int]) -> dict[int, Decimal]:
    """Per household, EUR owed whatever the hour (absent when nothing is)."""
    rows = (
        HourlyUsage.objects.filter(owed(), household_id__in=household_ids)
        .values("household_id")
        .annotate(total=Sum(line_amount()))
        .order_by()
    )
    return {row["household_id"]: eur(row["total"]) for row in rows}


# --- Price quotes ---------------------------------------------------------------------------------


def newest_quote(now: datetime) -> PriceQuote | None:
    """The newest quote at ``now``, however old; one stamped further ahead than CLOCK_SKEW is never taken.

    A quote from a wrong clock does not hide the older ones either. One query (the fetched_at index).
    """
    return PriceQuote.objects.filter(fetched_at__lte=now + CLOCK_SKEW).order_by("-fetched_at", "-pk").first()


def is_fresh(quote: PriceQuote, now: datetime) -> bool:
    """Whether ``quote`` may price a settlement at ``now``: at most PRICE_MAX_AGE old (exactly that old counts)."""
    return now - settings.PRICE_MAX_AGE <= quote.fetched_at <= now + CLOCK_SKEW


def usable_quote(now: datetime) -> PriceQuote | None:
    """The newest quote if it is fresh, else None (never guess a price).

    An older quote is never fresher than a newer one, so a stale newest quote means there is none.
    """
    quote = newest_quote(now)
    return quote if quote is not None and is_fresh(quote, now) else None


# --- Balance --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Balance:
    satoshis: int
    eur: Decimal | None  # None without any price quote: never guess a price
    quote: PriceQuote | None


def wallet_balance(wallet: Wallet | None, now: datetime) -> Balance:
    """What a household's wallet holds, in satoshis and in EUR at the newest quote (two queries).

    Pages show the newest quote even when it is too old to settle with; ``quote.fetched_at`` says
    how old it is.
    """
    quote = newest_quote(now)
    satoshis = balance_satoshis(wallet) if wallet is not None else 0
    return Balance(satoshis, satoshis_to_eur(satoshis, quote.bsv_eur) if quote else None, quote)


def balances_eur(household_ids: Iterable[int], now: datetime) -> dict[int, Decimal] | None:
    """``wallet_balance(...).eur`` for many households in two queries; None without any quote.

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


def balances_at(household_ids: Iterable[int], moment: datetime) -> dict[int, int]:
    """Satoshis each household's wallet held at ``moment``, as our books recorded it (a statement's month end).

    The coins we knew of by then (``created_at``) that no payment made before it had reserved or
    spent: a settlement or a pass reserves its coins when it is signed, and its change comes in with
    it. A household without a coin then is absent. One query.
    """
    coins = (
        Utxo.objects.filter(wallet__household_id__in=list(household_ids), created_at__lt=moment)
        .exclude(reserved_by__created_at__lt=moment)
        .exclude(reserved_by_pass__created_at__lt=moment)
        .exclude(reserved_by_withdrawal__created_at__lt=moment)
        .values("wallet__household_id")
        .annotate(total=Sum("satoshis"))
        .order_by()
    )
    return {row["wallet__household_id"]: int(row["total"] or 0) for row in coins}


# --- The recent rate, days left, the month projected (pure arithmetic, no queries) ----------------


def _days(span: timedelta) -> Decimal:
    """A span in days, exactly (whole microseconds, never through a float)."""
    return Decimal(span // _MICROSECOND) / _MICROSECONDS_A_DAY


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
    return eur(total_eur) / max(_days(end - max(start, first_hour)), Decimal(1))


def days_left(balance_eur: Decimal, owed_eur: Decimal | None, daily: Decimal | None) -> Decimal | None:
    """Whole days (rounded down) the balance lasts at ``daily`` after paying what is owed; None without spending.

    A balance that does not cover what is owed lasts 0 days.
    """
    if daily is None or daily <= 0:
        return None
    spare = max(balance_eur - eur(owed_eur), ZERO)
    return (spare / daily).to_integral_value(rounding=ROUND_FLOOR)


def projection(so_far_eur: Decimal | None, daily: Decimal | None, now: datetime, month_end: datetime) -> Decimal:
    """The month so far plus the rest of it at the recent rate, to the cent; the month so far without a rate.

    Not "so far / elapsed * length": an hour into the month that would multiply one hour's use by
    seven hundred, and fire every projected-month alarm on the 1st.
    """
    rest = (daily or ZERO) * _days(max(month_end - now, timedelta(0)))
    return (eur(so_far_eur) + rest).quantize(CENT, rounding=ROUND_HALF_UP)


def recent_daily_costs(household_ids: Iterable[int], now: datetime) -> dict[int, Decimal | None]:
    """The recent rate (``daily_rate`` over ``recent_window``) per household; absent without a line in the window."""
    window = recent_window(now)
    rows = (
        HourlyUsage.objects.filter(household_id__in=household_ids, hour_start__gte=window[0], hour_start__lt=window[1])
        .values("household_id")
        .annotate(total=Sum(line_amount()), first=Min("hour_start"))
        .order_by()
    )
    return {row["household_id"]: daily_rate(row["total"], row["first"], window) for row in rows}
