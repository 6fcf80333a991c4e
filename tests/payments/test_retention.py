"""prune_quotes and prune_ledger: the payments tables that grow with time lose only what nobody refers to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from meters.ingest import ingest_readings
from meters.schema import ReadingIn
from payments.broadcast import send_one
from payments.management.commands.prune_quotes import Command as PruneQuotes
from payments.models import CommunityPass, LedgerBlock, LedgerOutput, LedgerTransaction, PriceQuote, Settlement
from payments.networks import Outcome
from payments.retention import prune_ledger, prune_quotes
from payments.settlement import settle_household
from payments.wallets import balance_satoshis, open_wallet

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
LATER = NOW + timedelta(days=31)  # past the 30 days kept
PRICE = Decimal("30")


pytestmark = pytest.mark.time_machine(NOW, tick=False)


def quote_at(at: datetime) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=at)


def used_by_a_settlement(quote: PriceQuote, household) -> Settlement:
    return Settlement.objects.create(
        household=household,
        period_start=quote.fetched_at,
        period_end=quote.fetched_at + timedelta(hours=1),
        kwh=Decimal("1"),
        eur=Decimal("0.25"),
        quote=quote,
        satoshis=833_334,
        fee_satoshis=23,
        txid=f"{quote.pk:064x}",
        raw_tx="00",
        state=Settlement.State.CONFIRMED,
    )


# --- prune_quotes ---------------------------------------------------------------------------------


def test_old_quotes_no_settlement_used_are_deleted_and_the_rest_kept(household):
    unused_old = [quote_at(NOW - timedelta(days=40, minutes=2 * i)) for i in range(3)]
    used_old = quote_at(NOW - timedelta(days=60))
    settlement = used_by_a_settlement(used_old, household)
    recent = quote_at(NOW - timedelta(days=29))
    newest = quote_at(NOW - timedelta(minutes=1))

    assert prune_quotes(NOW, days=30, batch_size=1000) == len(unused_old)

    assert set(PriceQuote.objects.all()) == {used_old, recent, newest}
    settlement.refresh_from_db()
    assert settlement.quote == used_old


def test_the_newest_quote_is_kept_however_old(db):
    quote_at(NOW - timedelta(days=90))
    newest = quote_at(NOW - timedelta(days=45))

    assert prune_quotes(NOW, days=30, batch_size=1000) == 1
    assert list(PriceQuote.objects.all()) == [newest]


def test_a_quote_a_settlement_may_still_take_is_kept_whatever_the_retention(db, settings):
    settings.PRICE_MAX_AGE = timedelta(days=3)
    within_max_age = quote_at(NOW - timedelta(days=2))
    quote_at(NOW - timedelta(days=4))
    newest = quote_at(NOW)

    assert prune_quotes(NOW, days=1, batch_size=1000) == 1
    assert set(PriceQuote.objects.all()) == {within_max_age, newest}


def test_quotes_are_deleted_in_bounded_batches(db):
    for i in range(7):
        quote_at(NOW - timedelta(days=40, minutes=2 * i))
    quote_at(NOW)

    with CaptureQueriesContext(connection) as queries:
        assert prune_quotes(NOW, days=30, batch_size=3) == 7

    deletes = [q["sql"] for q in queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 3 + 3 + 1 rows
    assert PriceQuote.objects.count() == 1


def test_prune_quotes_command_says_what_it_deleted_and_its_help_what_it_keeps(db):
    quote_at(NOW - timedelta(days=40))
    quote_at(NOW)
    out = StringIO()

    call_command("prune_quotes", "--days", "30", stdout=out)

    assert out.getvalue().strip() == "Deleted 1 price quotes older than 30 days that no settlement used."
    assert PriceQuote.objects.count() == 1
    assert "keeps every quote a settlement used, the newest" in PruneQuotes.help


# --- prune_ledger ---------------------------------------------------------------------------------


def send(meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=f"2026-11-22T{t}:00Z", energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def settle(household, ledger, period_end: datetime) -> Settlement:
    result = settle_household(household.pk, period_end, timezone.now())
    assert result.status == "signed", result
    send_one(Settlement, result.settlement_id, ledger)
    ledger.mine()
    return Settlement.objects.get(pk=result.settlement_id)


@pytest.fixture
def paid_twice(make_meter, ledger):
    """A faucet deposit, then two settlements: the second spends the first's change; all mined."""
    quote_at(NOW - timedelta(minutes=1))
    meter, _ = make_meter()
    wallet = open_wallet(meter.household)
    faucet_txid = ledger.fund(wallet.address, 10_000_000)
    ledger.mine()
    wallet.sync_coins(ledger)
    send(meter, ("10:00", "100"), ("11:00", "101"), ("12:00", "102"), ("13:00", "103"))
    first = settle(meter.household, ledger, datetime(2026, 11, 22, 11, tzinfo=UTC))
    wallet.sync_coins(ledger)
    second = settle(meter.household, ledger, datetime(2026, 11, 22, 12, tzinfo=UTC))
    wallet.sync_coins(ledger)
    return meter.household, wallet, faucet_txid, first, second


def test_spent_history_goes_and_everything_a_payment_or_a_coin_needs_stays(paid_twice, ledger):
    household, wallet, faucet_txid, first, second = paid_twice
    coins_before = ledger.coins(wallet.address)
    statuses_before = [ledger.status(s.txid) for s in (first, second)]
    tip = LedgerBlock.objects.order_by("-height").first()

    deleted = prune_ledger(LATER, days=30, batch_size=1000)

    # The deposit's output (spent by the first payment) and the first payment's change (spent by the
    # second); then the deposit, which has nothing left; then its block, empty now.
    assert deleted == {"outputs": 2, "transactions": 1, "blocks": 1}
    assert not LedgerTransaction.objects.filter(txid=faucet_txid).exists()
    assert not LedgerOutput.objects.filter(spent_by__isnull=False).exists()
    assert set(LedgerTransaction.objects.values_list("txid", flat=True)) == {first.txid, second.txid}
    assert ledger.coins(wallet.address) == coins_before
    assert [ledger.status(s.txid) for s in (first, second)] == statuses_before
    assert LedgerBlock.objects.order_by("-height").first() == tip
    for settlement in (first, second):
        settlement.refresh_from_db()
        assert settlement.state == Settlement.State.SEEN

    # The wallet goes on paying from what is left, and a spent coin stays spent.
    later = settle(household, ledger, datetime(2026, 11, 22, 13, tzinfo=UTC))
    assert ledger.status(later.txid).outcome == Outcome.CONFIRMED
    assert ledger.broadcast(first.raw_tx).outcome == Outcome.CONFIRMED  # known: its status, unchanged
    wallet.sync_coins(ledger)
    assert balance_satoshis(wallet) == sum(c.satoshis for c in ledger.coins(wallet.address))


@pytest.mark.parametrize("carrier", ["settlement", "pass"])
def test_a_transaction_a_settlement_or_a_pass_carries_is_never_deleted(paid_twice, ledger, carrier):
    _, _, faucet_txid, first, _ = paid_twice
    if carrier == "settlement":
        Settlement.objects.filter(pk=first.pk).update(txid=faucet_txid)  # as if it had paid with that txid
    else:
        CommunityPass.objects.create(
            source=CommunityPass.Source.X402,
            txid=faucet_txid,
            raw_tx="00",
            satoshis=1000,
            valid_until=NOW + timedelta(days=30),
            state=CommunityPass.State.CONFIRMED,
        )

    prune_ledger(LATER, days=30, batch_size=1000)

    assert LedgerTransaction.objects.filter(txid=faucet_txid, block__isnull=False).exists()
    assert ledger.status(faucet_txid).outcome == Outcome.CONFIRMED


def test_nothing_younger_than_the_retention_is_deleted(paid_twice, ledger):
    counts = (LedgerOutput.objects.count(), LedgerTransaction.objects.count(), LedgerBlock.objects.count())

    assert prune_ledger(NOW + timedelta(days=29), days=30, batch_size=1000) == {
        "outputs": 0,
        "transactions": 0,
        "blocks": 0,
    }
    assert (LedgerOutput.objects.count(), LedgerTransaction.objects.count(), LedgerBlock.objects.count()) == counts


def test_old_empty_blocks_go_but_the_tip_stays(ledger):
    for _ in range(4):
        ledger.mine()
    tip = LedgerBlock.objects.order_by("-height").first()

    assert prune_ledger(LATER, days=30, batch_size=2)["blocks"] == 3
    assert list(LedgerBlock.objects.all()) == [tip]
    with time_machine.travel(LATER, tick=False):
        assert ledger.mine().height == tip.height + 1


def test_prune_ledger_command_reports_each_table(ledger):
    ledger.mine()
    ledger.mine()
    out = StringIO()

    with time_machine.travel(LATER, tick=False):
        call_command("prune_ledger", stdout=out)

    assert out.getvalue().strip() == (
        "Deleted 0 spent outputs, 0 transactions and 1 empty blocks mined more than 30 days ago."
    )
