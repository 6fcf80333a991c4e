"""The dashboard's cards: today, this month and its projection, the wallet, arrears. Composes meters and payments.

Four queries whatever the history: one aggregate over the household's usage lines (every figure
is a conditional sum of it), the wallet, and ``wallet_balance``'s two (quote, coins). Owed,
arrears, the recent rate, days left and the projection are payments/figures.py's definitions, fed
from that aggregate, so a card, the admin and an alarm evaluated at the same moment agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Min, Q, Sum

from lib.periods import local_date, local_day_bounds, local_month_bounds
from meters.models import HourlyUsage, Household
from payments import figures
from payments.figures import CENT, ZERO, Balance, wallet_balance
from payments.models import Wallet


@dataclass(frozen=True)
class Figures:
    """Usage of some hours: EUR of the priced lines, kWh of all, kWh still waiting for a price."""

    eur: Decimal
    kwh: Decimal
    pending_kwh: Decimal


@dataclass(frozen=True)
class Cards:
    today: Figures
    month: Figures
    month_end: datetime  # UTC instant the local month ends
    projected_eur: Decimal  # to the cent; the month so far without a recent rate
    per_day_eur: Decimal | None  # the recent rate to the cent; None without a line in the last week of closed hours
    balance: Balance
    owed_eur: Decimal  # priced usage not settled yet (arrears included), which the balance will pay
    days_left: int | None  # whole days (rounded down) the balance lasts at the recent rate, after what is owed
    arrears_eur: Decimal
    arrears_since: datetime | None  # first unpaid hour (UTC)

    @property
    def in_arrears(self) -> bool:
        return self.arrears_eur > 0


def dashboard_cards(household: Household, now: datetime) -> Cards:
    """The cards' figures at ``now``.

    - Today and this month are the household's local day and month, as UTC bounds.
    - The recent rate, the projection and the days left: payments/figures.py defines them.
    - Owed and arrears: payments/figures.py's ``owed`` and ``in_arrears`` (hours a run should have paid).
    """
    tz_name = household.timezone
    today_start, today_end = local_day_bounds(now, tz_name)
    month_start, month_end = local_month_bounds(local_date(now, tz_name), tz_name)
    window = figures.recent_window(now)
    recent_start, recent_end = window

    today = Q(hour_start__gte=today_start, hour_start__lt=today_end)
    month = Q(hour_start__gte=month_start, hour_start__lt=month_end)
    recent = Q(hour_start__gte=recent_start, hour_start__lt=recent_end)
    owed, arrears = figures.owed(), figures.in_arrears(now)
    energy, unpriced = Q(kind=HourlyUsage.Kind.ENERGY), Q(cost_eur__isnull=True)
    # Lines of the month and the last week, plus open lines older than both (arrears): the second
    # branch is what the partial index usage_open_lines covers.
    lines = HourlyUsage.objects.filter(household=household).filter(
        Q(hour_start__gte=min(month_start, recent_start), hour_start__lt=month_end) | owed
    )
    amount = figures.line_amount()  # cost and taxes: what the household pays
    sums = lines.aggregate(
        today_eur=Sum(amount, filter=today),
        today_kwh=Sum("kwh", filter=today & energy),
        today_pending=Sum("kwh", filter=today & unpriced),
        month_eur=Sum(amount, filter=month),
        month_kwh=Sum("kwh", filter=month & energy),
        month_pending=Sum("kwh", filter=month & unpriced),
        recent_eur=Sum(amount, filter=recent),
        recent_first=Min("hour_start", filter=recent),
        owed_eur=Sum(amount, filter=owed),
        arrears_eur=Sum(amount, filter=arrears),
        arrears_since=Min("hour_start", filter=arrears),
    )
    per_day = figures.daily_rate(sums["recent_eur"], sums["recent_first"], window)
    month_figures = Figures(sums["month_eur"] or ZERO, sums["month_kwh"] or ZERO, sums["month_pending"] or ZERO)
    wallet = Wallet.objects.filter(household=household).order_by().first()  # no ordering: no join
    balance = wallet_balance(wallet, now)
    owed_eur = sums["owed_eur"] or ZERO
    days_left = None if balance.eur is None else figures.days_left(balance.eur, owed_eur, per_day)
    return Cards(
        today=Figures(sums["today_eur"] or ZERO, sums["today_kwh"] or ZERO, sums["today_pending"] or ZERO),
        month=month_figures,
        month_end=month_end,
        projected_eur=figures.projection(month_figures.eur, per_day, now, month_end),
        per_day_eur=per_day.quantize(CENT, ROUND_HALF_UP) if per_day is not None else None,
        balance=balance,
        owed_eur=owed_eur,
        days_left=None if days_left is None else int(days_left),
        arrears_eur=sums["arrears_eur"] or ZERO,
        arrears_since=sums["arrears_since"],
    )
