"""What the statement tests share: a Madrid household on time of use, a month of readings through ingest, a wallet
that pays part of it through the real settlement path, and the ledger's own sums to compare a statement with.

October 2026 in Madrid has the 25-hour day (summer time ends on Sunday 25 October): 745 hours.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import time_machine
from django.db.models import Q, Sum

from lib.periods import HOUR
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Household, Meter, Tariff, TariffVersion
from meters.schema import ReadingIn
from payments.broadcast import send_one
from payments.figures import eur
from payments.models import PriceQuote, Settlement
from payments.settlement import settle_household
from payments.statements.lines import to_cent
from payments.wallets import open_wallet

OCTOBER = date(2026, 10, 1)
OCTOBER_START = datetime(2026, 9, 30, 22, 0, tzinfo=UTC)  # 1 October 00:00 CEST
OCTOBER_END = datetime(2026, 10, 31, 23, 0, tzinfo=UTC)  # 1 November 00:00 CET
NOVEMBER = date(2026, 11, 1)
NOVEMBER_END = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
AFTER_OCTOBER = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # the statement is due (6 hours after the month)
LONG_AGO = datetime(2026, 1, 1, tzinfo=UTC)
STANDING = Decimal("0.350000")  # EUR a day
BSV_EUR = Decimal("30")
FUNDS = 500_000_000  # 5 BSV: EUR 150 at BSV_EUR, more than a month of the use below
BANDS = [
    {"days": [0, 1, 2, 3, 4], "start": 0, "end": 8, "rate": "0.130000"},
    {"days": [0, 1, 2, 3, 4], "start": 8, "end": 18, "rate": "0.200000"},
    {"days": [0, 1, 2, 3, 4], "start": 18, "end": 22, "rate": "0.320000"},
    {"days": [0, 1, 2, 3, 4], "start": 22, "end": 24, "rate": "0.200000"},
    {"days": [5, 6], "start": 0, "end": 24, "rate": "0.130000"},
]


def tou_tariff(name: str = "Statement TOU") -> Tariff:
    tariff = Tariff.objects.create(name=name)
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=LONG_AGO,
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=BANDS,
        standing_charge_per_day=STANDING,
    )
    return tariff


def contracted_long_ago(*households: Household) -> None:
    """Households made by a test exist "now"; their contract began before the months the tests bill."""
    Household.objects.filter(pk__in=[h.pk for h in households]).update(created_at=LONG_AGO)
    for household in households:
        household.refresh_from_db()


def kwh_for(index: int) -> Decimal:
    """A consumption that differs hour by hour (so rates and rounding differ line by line)."""
    return Decimal("0.137") + Decimal(index % 7) * Decimal("0.113") + Decimal(index % 3) * Decimal("0.001")


def feed(meter: Meter, start: datetime, end: datetime, *, register: Decimal = Decimal("1000"), kwh=kwh_for) -> Decimal:
    """Hourly readings from ``start`` to ``end`` inclusive, through ingest (trusted, as staff would feed a history).

    Returns the last register value.
    """
    items, moment, index = [], start, 0
    while moment <= end:
        items.append((index, ReadingIn(timestamp=moment.isoformat(), energy_kwh=register)))
        register += kwh(index)
        moment += HOUR
        index += 1
    for first in range(0, len(items), 1000):
        outcome = ingest_readings(meter.pk, items[first : first + 1000], end + HOUR)
        assert outcome.rejected == [], outcome.rejected[:3]
    return register - kwh(index - 1)


def reading(meter: Meter, at: datetime, register: Decimal, now: datetime) -> None:
    outcome = ingest_readings(meter.pk, [(0, ReadingIn(timestamp=at.isoformat(), energy_kwh=register))], now)
    assert outcome.rejected == [] and outcome.accepted == 1, outcome.as_json()


def pay_until(household: Household, ledger, period_end: datetime, funds: int = FUNDS) -> Settlement:
    """Fund the household's wallet and settle everything before ``period_end``, at ``period_end`` + 5 minutes."""
    now = period_end + timedelta(minutes=5)
    with time_machine.travel(now, tick=False):
        wallet = open_wallet(household)
        ledger.fund(wallet.address, funds)
        ledger.mine()
        wallet.sync_coins(ledger)
        PriceQuote.objects.create(source="fixed", bsv_eur=BSV_EUR, fetched_at=now)
        result = settle_household(household.pk, period_end, now)
        assert result.status == "signed", result
        assert send_one(Settlement, result.settlement_id, ledger) == "seen"
    return Settlement.objects.get(pk=result.settlement_id)


def ledger_sums(household: Household, start: datetime, end: datetime) -> dict[str, Decimal]:
    """The ledger's own sums for the hours in [start, end): what a statement must agree with."""
    lines = HourlyUsage.objects.filter(household=household, hour_start__gte=start, hour_start__lt=end)
    settled = lines.filter(settled_at__isnull=False).aggregate(c=Sum("cost_eur"), t=Sum("tax_eur"))
    unsettled = lines.filter(settled_at__isnull=True, cost_eur__isnull=False).aggregate(
        c=Sum("cost_eur"), t=Sum("tax_eur")
    )
    # eur(): SQLite hands sums back through a float.
    return {
        "settled": eur(settled["c"]) + eur(settled["t"]),
        "unsettled": eur(unsettled["c"]) + eur(unsettled["t"]),
        "kwh": eur(lines.filter(kind="energy").aggregate(k=Sum("kwh"))["k"]),
        "hours": lines.filter(~Q(kind="energy")).count(),
    }


def total_of(sums: dict[str, Decimal]) -> Decimal:
    return to_cent(sums["settled"] + sums["unsettled"])
