"""What paid a month's hours, and what the wallet held when the month ended: a statement's payments section.

Read through the models (settlement lines and their usage lines, coins), never through the settling
code: a statement reports what the books say, whoever wrote them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Sum

from payments.figures import balances_at, eur, newest_quote
from payments.models import PriceQuote, Settlement, SettlementLine, Withdrawal


@dataclass(frozen=True)
class Paid:
    """A live settlement's share of a month: the month's hours it paid, in EUR and in its satoshis."""

    household_id: int
    settlement_id: int
    txid: str
    paid_at: datetime
    eur: Decimal
    satoshis: int


def month_payments(household_ids: Iterable[int], start: datetime, end: datetime) -> dict[int, list[Paid]]:
    """Per household, the live settlements that paid usage lines of hours in [start, end), oldest first.

    A settlement pays the open lines of hours from its ``period_start`` (its oldest line) to its
    ``period_end``. One wholly inside the month paid only the month's hours: all its EUR and
    satoshis are the month's, read from the settlement alone. One that crosses the month's edge (the
    first run of a month pays the last hour of the one before; a household in arrears pays weeks at
    once; a late reading's true-up of an older hour) is split by its lines: the EUR of this month's
    lines, and its satoshis in proportion, exactly, half up. A refused settlement paid nothing (its
    lines were released and paid by a later one). Two queries, the second only for the few
    settlements that cross an edge: reading every line of a month would cost as much again as the
    ledger itself.
    """
    settlements = (
        Settlement.objects.filter(
            household_id__in=list(household_ids), created_at__gt=start, period_start__lt=end, period_end__gt=start
        )
        .exclude(state__in=Settlement.FAILED)
        .order_by("created_at", "pk")
        .values_list("pk", "household_id", "txid", "created_at", "eur", "satoshis", "period_start", "period_end")
    )
    rows = list(settlements)
    crossing = [row[0] for row in rows if row[6] < start or row[7] > end]
    parts = {}
    if crossing:
        parts = dict(
            SettlementLine.objects.filter(
                settlement_id__in=crossing, released=False, usage__hour_start__gte=start, usage__hour_start__lt=end
            )
            .values("settlement_id")
            .annotate(part=Sum("eur"))
            .order_by()
            .values_list("settlement_id", "part")
        )
    paid: defaultdict[int, list[Paid]] = defaultdict(list)
    for pk, household_id, txid, created_at, whole, satoshis, period_start, period_end in rows:
        if period_start >= start and period_end <= end:
            part, share = whole, satoshis
        elif pk in parts:
            part = eur(parts[pk])
            share = satoshis if part == whole or not whole else _share(satoshis, part, whole)
        else:
            continue  # it crosses the edge but paid none of this month's hours
        paid[household_id].append(Paid(household_id, pk, txid, created_at, part, share))
    return paid


def _share(satoshis: int, part: Decimal, whole: Decimal) -> int:
    return int((Decimal(satoshis) * part / whole).quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class MonthEndBalances:
    at: datetime
    satoshis: dict[int, int]
    quote: PriceQuote | None  # the newest quote at the month's end; None: no EUR figure (never guess a price)


def month_end_balances(household_ids: Iterable[int], end: datetime) -> MonthEndBalances:
    return MonthEndBalances(end, balances_at(household_ids, end), newest_quote(end))


def month_withdrawals(households, start: datetime, end: datetime) -> dict[int, list[Withdrawal]]:
    """Per household, the live withdrawals of its balance made in [start, end), oldest first.

    For a household whose account closed before ``end`` (this is its final statement), also those made
    since: the balance is withdrawn after the last hours are paid, which may be after the month ended.
    One query.
    """
    ids = [household.pk for household in households]
    closed = {
        household.pk for household in households if household.closed_at is not None and household.closed_at <= end
    }
    found: defaultdict[int, list[Withdrawal]] = defaultdict(list)
    rows = (
        Withdrawal.objects.filter(household_id__in=ids, created_at__gte=start)
        .exclude(state__in=Withdrawal.FAILED)
        .order_by("created_at", "pk")
    )
    for withdrawal in rows:
        if withdrawal.created_at < end or withdrawal.household_id in closed:
            found[withdrawal.household_id].append(withdrawal)
    return found
