from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from alarms import hooks
from alarms.models import AlarmRule
from lib.periods import floor_hour
from meters.models import HourlyUsage, Household, Meter
from payments.models import PriceQuote, Settlement, Utxo, Wallet

PRICE = Decimal("100")  # EUR per BSV: EUR 1 = 1,000,000 sat, so balances are easy to read
_lines = itertools.count(1)
_coins = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_batcher(monkeypatch):
    """Each test gets its own usage batcher, so no timer or pending id leaks into the next test."""
    batcher = hooks.UsageBatcher()
    monkeypatch.setattr(hooks, "usage_batcher", batcher)
    yield batcher
    with batcher._lock:
        batcher._take()


@dataclass
class Home:
    """A household with a meter and a wallet, and plain-ORM ways to set what the alarms measure."""

    household: Household
    meter: Meter
    wallet: Wallet

    def line(self, hour: datetime, *, eur: str = "0", kwh: str = "0", settled: bool = True) -> HourlyUsage:
        return HourlyUsage.objects.create(
            household=self.household,
            meter=self.meter,
            hour_start=hour,
            seq=next(_lines),
            kwh=Decimal(kwh),
            rate=Decimal("0.25"),
            cost_eur=Decimal(eur),
            settled_at=hour + timedelta(hours=1, minutes=5) if settled else None,
        )

    def set_hour(self, hour: datetime, *, eur: str = "0", kwh: str = "0") -> None:
        """Make ``hour`` cost exactly ``eur`` and use exactly ``kwh`` (replacing what it had)."""
        HourlyUsage.objects.filter(household=self.household, hour_start=hour).delete()
        self.line(hour, eur=eur, kwh=kwh)

    def set_balance(self, eur: str) -> None:
        """Exactly ``eur`` in available coins (at PRICE); a reserved coin beside it must not count."""
        Utxo.objects.filter(wallet=self.wallet).delete()
        sats = int(Decimal(eur) * 100_000_000 / PRICE)
        Utxo.objects.create(
            wallet=self.wallet, txid=f"{next(_coins):064x}", vout=0, satoshis=sats, raw_parent="00", confirmed=True
        )
        Utxo.objects.create(
            wallet=self.wallet,
            txid=f"{next(_coins):064x}",
            vout=0,
            satoshis=123_456_789,
            raw_parent="00",
            state=Utxo.State.SPENT,
        )

    def failed_settlement(self, at: datetime) -> Settlement:
        quote = PriceQuote.objects.order_by("-fetched_at").first()
        settlement = Settlement.objects.create(
            household=self.household,
            period_start=floor_hour(at) - timedelta(hours=1),
            period_end=floor_hour(at),
            kwh=Decimal("1"),
            eur=Decimal("0.25"),
            quote=quote,
            satoshis=250_000,
            fee_satoshis=20,
            txid=f"{next(_coins):064x}",
            raw_tx="00",
            state=Settlement.State.REJECTED,
        )
        Settlement.objects.filter(pk=settlement.pk).update(updated_at=at)
        return settlement

    def rule(self, kind: str, threshold: str | None = None, **fields) -> AlarmRule:
        return AlarmRule.objects.create(
            household=self.household, kind=kind, threshold=None if threshold is None else Decimal(threshold), **fields
        )


def make_home_for(household: Household) -> Home:
    meter = Meter.objects.create(serial=f"AL-{household.pk}-{next(_coins)}", household=household)
    Meter.objects.filter(pk=meter.pk).update(last_seen_at=timezone.now())
    meter.refresh_from_db()
    wallet = Wallet.objects.create(household=household, derivation_index=household.pk, address=f"addr-{household.pk}")
    return Home(household, meter, wallet)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=timezone.now() - timedelta(minutes=1))


@pytest.fixture
def home(household, quote) -> Home:
    return make_home_for(household)


@pytest.fixture
def other_home(other_household, quote) -> Home:
    return make_home_for(other_household)
