"""Hourly settlement on the local ledger: money moves once per hour owed, never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from meters.ingest import ingest_readings
from meters.models import HourlyUsage
from meters.schema import ReadingIn
from payments import keys, runs
from payments.broadcast import send_one, sweep_signed
from payments.models import LedgerOutput, PriceQuote, Settlement, SettlementLine
from payments.networks import Outcome, Reply
from payments.settlement import settle_household
from payments.wallets import balance_satoshis, open_wallet
from tests.threads import at_once

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)  # readings up to 14:00 are not in the future
PERIOD_END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PRICE = Decimal("30")  # EUR per BSV: 1 EUR = 3,333,333.33 sat
FUNDS = 10_000_000  # 0.1 BSV = EUR 3


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=NOW - timedelta(minutes=1))


@pytest.fixture
def home(make_meter, ledger, quote):
    """A household with a meter, a funded wallet and 2 kWh (EUR 0.50) used from 10:00 to 12:00."""
    meter, _ = make_meter()
    household = meter.household
    wallet = open_wallet(household)
    ledger.fund(wallet.address, FUNDS)
    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)
    send(meter, ("10:00", "100"), ("11:00", "101"), ("12:00", "102"))
    return household, meter, wallet


def send(meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=f"2026-11-22T{t}:00Z", energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def utility_received(ledger) -> int:
    outputs = LedgerOutput.objects.filter(address=keys.utility_address())
    return outputs.aggregate(total=Sum("satoshis"))["total"] or 0


def settle_and_send(household, ledger, period_end=PERIOD_END):
    result = settle_household(household.pk, period_end, timezone.now())
    if result.settlement_id:
        send_one(Settlement, result.settlement_id, ledger)
    return result


def test_a_closed_hour_is_paid_to_the_utility_at_the_quoted_price(home, ledger):
    household, _, wallet = home
    result = settle_and_send(household, ledger)
    settlement = Settlement.objects.get(pk=result.settlement_id)
    # EUR 0.50 at 30 EUR/BSV = 1,666,666.67 sat, half up.
    assert (settlement.eur, settlement.kwh, settlement.satoshis) == (Decimal("0.5"), Decimal("2"), 1_666_667)
    assert settlement.state == Settlement.State.SEEN
    assert utility_received(ledger) == 1_666_667
    assert balance_satoshis(wallet) == FUNDS - 1_666_667 - settlement.fee_satoshis
    assert settlement.fee_satoshis >= 23  # 100 sat/kB of a 1-in-2-out transaction


def test_settling_the_same_hour_twice_pays_once(home, ledger):
    household, _, _ = home
    first = settle_and_send(household, ledger)
    second = settle_and_send(household, ledger)
    assert (first.status, second.status) == ("signed", "nothing")
    assert Settlement.objects.filter(household=household).count() == 1
    assert utility_received(ledger) == Settlement.objects.get().satoshis


def test_only_hours_before_the_period_end_are_paid(home, ledger):
    household, meter, _ = home
    send(meter, ("13:00", "110"))  # hour 12 is not closed at 12:07
    settle_and_send(household, ledger)
    settlement = Settlement.objects.get()
    assert settlement.eur == Decimal("0.5")
    assert HourlyUsage.objects.filter(household=household, hour_start__gte=PERIOD_END, settled_at__isnull=True).exists()


def test_a_wallet_that_cannot_pay_stays_in_arrears_and_pays_the_whole_debt_later(make_meter, ledger, quote):
    meter, _ = make_meter()
    household = meter.household
    wallet = open_wallet(household)
    send(meter, ("10:00", "100"), ("11:00", "101"), ("12:00", "102"))
    assert settle_and_send(household, ledger).status == "arrears"
    assert not Settlement.objects.exists()
    assert HourlyUsage.objects.filter(household=household, settled_at__isnull=True).count() == 2

    ledger.fund(wallet.address, 5_000_000)

    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)
    later = PERIOD_END + timedelta(hours=1)
    send(meter, ("13:00", "103"))
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=timezone.now())
        result = settle_and_send(household, ledger, later)
    settlement = Settlement.objects.get(pk=result.settlement_id)
    assert settlement.eur == Decimal("0.75")  # both arrears hours and the new one
    assert not HourlyUsage.objects.filter(household=household, hour_start__lt=later, settled_at__isnull=True).exists()


def test_a_stale_price_defers_the_run_and_signs_nothing(home, ledger, quote):
    household, _, _ = home
    PriceQuote.objects.filter(pk=quote.pk).update(fetched_at=NOW - timedelta(hours=2))
    assert settle_and_send(household, ledger).status == "deferred"
    assert not Settlement.objects.exists()


def test_zero_consumption_needs_no_transaction(make_meter, ledger, quote):
    meter, _ = make_meter()
    wallet = open_wallet(meter.household)
    ledger.fund(wallet.address, 10_000)
    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)
    send(meter, ("10:00", "100"), ("12:00", "100"))
    assert settle_and_send(meter.household, ledger).status == "nothing"
    assert not Settlement.objects.exists()


def test_a_crash_between_signing_and_broadcasting_is_finished_by_the_sweeper(home, ledger):
    household, _, _ = home
    result = settle_household(household.pk, PERIOD_END, timezone.now())  # ...and the worker dies here
    assert Settlement.objects.get().state == Settlement.State.SIGNED
    assert utility_received(ledger) == 0
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        assert sweep_signed(Settlement, ledger) == 1
        assert sweep_signed(Settlement, ledger) == 0
        assert settle_household(household.pk, PERIOD_END, timezone.now()).status == "nothing"
    settlement = Settlement.objects.get(pk=result.settlement_id)
    assert settlement.state == Settlement.State.SEEN
    assert utility_received(ledger) == settlement.satoshis


def test_a_rejected_payment_owes_its_hours_again_and_frees_its_coins(home, ledger, monkeypatch):
    household, _, wallet = home
    monkeypatch.setattr(ledger, "broadcast", lambda raw: Reply(Outcome.REJECTED, "mandatory-script-verify-flag-failed"))
    result = settle_and_send(household, ledger)
    settlement = Settlement.objects.get(pk=result.settlement_id)
    assert settlement.state == Settlement.State.REJECTED
    assert not HourlyUsage.objects.filter(household=household, settled_at__isnull=False).exists()
    assert SettlementLine.objects.filter(settlement=settlement, released=False).count() == 0
    assert balance_satoshis(wallet) == FUNDS
    monkeypatch.undo()
    retry = settle_and_send(household, ledger)
    assert Settlement.objects.get(pk=retry.settlement_id).state == Settlement.State.SEEN
    assert utility_received(ledger) == settlement.satoshis


def test_reconciliation_holds_over_many_hours_with_late_readings(make_meter, ledger):
    meter, _ = make_meter()
    household = meter.household
    wallet = open_wallet(household)
    ledger.fund(wallet.address, 50_000_000)
    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)
    start = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    register = Decimal("1000")
    late = []
    for hour in range(12):
        moment = start + timedelta(hours=hour, minutes=30)
        register += Decimal(hour % 4) / 2 + Decimal("0.25")
        reading = (moment, register)
        # Every third reading arrives two hours late, after its hours were settled.
        if hour % 3 == 1:
            late.append(reading)
        else:
            _send_at(meter, [reading])
        run_at = start + timedelta(hours=hour + 1, minutes=7)
        with time_machine.travel(run_at, tick=False):
            if hour % 3 == 0 and late:
                _send_at(meter, late)
                late = []
            PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=run_at)
            settle_and_send(household, ledger, run_at.replace(minute=0))
            if hour % 2:
                ledger.mine()

    lines = HourlyUsage.objects.filter(household=household)
    total = lines.aggregate(eur=Sum("cost_eur"))["eur"]
    settled = SettlementLine.objects.filter(released=False).aggregate(eur=Sum("eur"))["eur"]
    unsettled = lines.filter(settled_at__isnull=True).aggregate(eur=Sum("cost_eur"))["eur"] or 0
    assert total == settled + unsettled
    assert settled == Settlement.objects.aggregate(eur=Sum("eur"))["eur"]
    # Every settled satoshi is in exactly one transaction, which the ledger holds.
    settlements = list(Settlement.objects.all())
    assert len({s.txid for s in settlements}) == len(settlements) >= 6
    assert utility_received(ledger) == sum(s.satoshis for s in settlements)
    # The balance we show is what the ledger says the wallet holds.
    on_ledger = LedgerOutput.objects.filter(address=wallet.address, spent_by__isnull=True)
    assert balance_satoshis(wallet) == on_ledger.aggregate(s=Sum("satoshis"))["s"]


def _send_at(meter, readings) -> None:
    items = [(i, ReadingIn(timestamp=t, energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def test_settle_command_reports_and_is_idempotent(home, capsys):
    call_command("settle")
    call_command("settle")
    out = capsys.readouterr().out.splitlines()
    assert "1 seen" in out[0]
    assert "nothing owed" in out[1]
    assert Settlement.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks under test")
@pytest.mark.django_db(transaction=True)
def test_two_workers_settling_at_once_pay_each_household_once(make_meter, ledger):
    PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=NOW)
    households = []
    for _ in range(4):
        meter, _ = make_meter()
        wallet = open_wallet(meter.household)
        ledger.fund(wallet.address, FUNDS)
        ledger.mine()  # deposits are spent once confirmed
        wallet.sync_coins(ledger)
        send(meter, ("10:00", "100"), ("12:00", "102"))
        households.append(meter.household)

    def worker() -> None:
        for household in households:
            settle_and_send(household, ledger)

    _, errors = at_once(worker, worker)
    assert errors == []
    assert Settlement.objects.count() == 4
    assert utility_received(ledger) == Settlement.objects.aggregate(s=Sum("satoshis"))["s"]


def test_an_unconfirmed_deposit_is_spent_only_once_it_is_in_a_block(make_meter, ledger, quote):
    meter, _ = make_meter()
    wallet = open_wallet(meter.household)
    ledger.fund(wallet.address, FUNDS)
    wallet.sync_coins(ledger)
    send(meter, ("10:00", "100"), ("12:00", "102"))
    assert settle_and_send(meter.household, ledger).status == "arrears"

    ledger.mine()
    # The run looks for deposits and confirmations when a household cannot pay, then tries again.
    tally = runs.settle_households([meter.household.pk], PERIOD_END)
    assert tally == {"seen": 1}


def test_change_is_spent_only_after_the_network_accepted_its_payment(home, ledger):
    household, meter, _ = home
    first = settle_household(household.pk, PERIOD_END, timezone.now())  # signed, not yet sent
    send(meter, ("13:00", "103"))
    later = PERIOD_END + timedelta(hours=1)
    # The funded coin is reserved and the change is not on the network yet: nothing to spend.
    assert settle_household(household.pk, later, timezone.now()).status == "arrears"
    send_one(Settlement, first.settlement_id, ledger)
    second = settle_and_send(household, ledger, later)
    assert Settlement.objects.get(pk=second.settlement_id).state == Settlement.State.SEEN
