"""Objects the health and status tests build: quotes, settlements, usage lines, ticks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from energypay.ops.models import Heartbeat
from energypay.tasks import HEARTBEAT
from meters.models import HourlyUsage, Household, Meter
from payments.models import PriceQuote, Settlement

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
_numbers = itertools.count(1)


def tick(at: datetime) -> None:
    Heartbeat.objects.update_or_create(name=HEARTBEAT, defaults={"last_tick": at})


def quote(at: datetime) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=at)


def settlement(household: Household, state: str, *, eur: str = "0.50") -> Settlement:
    """A settlement created now (freeze the clock to place it in time)."""
    return Settlement.objects.create(
        household=household,
        period_start=NOW - timedelta(hours=2),
        period_end=NOW - timedelta(hours=1),
        kwh=Decimal("2"),
        eur=Decimal(eur),
        quote=PriceQuote.objects.order_by("-fetched_at").first() or quote(NOW),
        satoshis=1_666_667,
        fee_satoshis=30,
        txid=f"{next(_numbers):064x}",
        raw_tx="00",
        state=state,
    )


def open_line(household: Household, hour: datetime, eur: str) -> HourlyUsage:
    """A priced, unsettled usage line (4 kWh at whatever rate makes ``eur``)."""
    meter = household.meters.first() or Meter.objects.create(serial=f"OPS-{household.pk}", household=household)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=next(_numbers) % 30000,
        kwh=Decimal("4"),
        rate=Decimal(eur) / 4,
        cost_eur=Decimal(eur),
    )
