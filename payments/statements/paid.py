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
from payments.models import PriceQuote, SettlementLine


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
    """Per household, the live settlements that paid usage lines of hours in [start, end), oldest first (one query).

    A settlement pays a run of hours that may cross the month's edge (the first run of a month pays
    the last hour of the one before; a household in arrears pays weeks at once): its satoshis are
    shared in proportion to the EUR of this month's lines, exactly, half up; a settlement wholly in
    the month keeps all of them. Released lines (a refused payment) count for the settlement that
    paid them later.
    """
    rows = (
        SettlementLine.objects.filter(
            released=False,
            usage__household_id__in=list(household_ids),
            usage__hour_start__gte=start,
            usage__hour_start__lt=end,
        )
        .values(
            "settlement_id",
            "settlement__household_id",
            "settlement__txid",
            "settlement__created_at",
            "settlement__eur",
            "settlement__satoshis",
        )
        .annotate(part=Sum("eur"))
        .order_by("settlement__created_at", "settlement_id")
    )
    paid: defaultdict[int, list[Paid]] = defaultdict(list)
    for row in rows:
        part, whole, satoshis = eur(row["part"]), row["settlement__eur"], row["settlement__satoshis"]
        share = satoshis if part == whole or not whole else _share(satoshis, part, whole)
        paid[row["settlement__household_id"]].append(
            Paid(
                household_id=row["settlement__household_id"],
                settlement_id=row["settlement_id"],
                txid=row["settlement__txid"],
                paid_at=row["settlement__created_at"],
                eur=part,
                satoshis=share,
            )
        )
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
