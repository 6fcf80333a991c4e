"""Settling a chunk at once (settlement.settle_many, broadcast.send_many): each payment made once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest
import time_machine
from bsv import P2PKH, PrivateKey, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum
from django.utils import timezone

from meters.ingest import ingest_readings
from meters.models import HourlyUsage
from meters.schema import ReadingIn
from payments import broadcast, keys, runs, settlement
from payments.broadcast import send_many, send_one
from payments.models import LedgerOutput, LedgerTransaction, PriceQuote, Settlement, SettlementLine, Utxo, Wallet
from payments.networks import Outcome, Reply
from payments.networks import local as local_module
from payments.networks.local import LocalLedger
from payments.settlement import settle_household, settle_many
from payments.wallets import balance_satoshis, open_wallet
from tests.threads import at_once

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PRICE = Decimal("30")  # EUR per BSV
FUNDS = 10_000_000
TWO_HOURS = (("10:00", "100"), ("11:00", "101"), ("12:00", "102"))  # 2 kWh: EUR 0.50, 1,666,667 sat
ACCEPTED = Reply(Outcome.ACCEPTED, "accepted into the mempool")
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks")


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=NOW - timedelta(minutes=1))


@pytest.fixture
def make_home(make_meter, ledger, quote):
    """``make_home(*deposits)``: a household whose wallet holds those deposits (mined unless told not to)."""

    def make(*deposits: int, readings=TWO_HOURS, mined: bool = True):
        meter, _ = make_meter()
        wallet = open_wallet(meter.household)
        for satoshis in deposits:
            ledger.fund(wallet.address, satoshis)
        if mined:
            ledger.mine()  # deposits are spent once confirmed
        wallet.sync_coins(ledger)
        if readings:
            send(meter, *readings)
        return meter.household

    return make


@pytest.fixture
def mixed(make_home, ledger) -> dict:
    """One household for each case a chunk meets; each owes EUR 0.50 for 10:00-12:00 unless said otherwise."""
    homes = {
        "paying": make_home(FUNDS),
        "arrears": make_home(),
        "nothing": make_home(FUNDS, readings=(("10:00", "100"), ("12:00", "100"))),
        "two_coins": make_home(1_000_000, 900_000),
        "change": make_home(FUNDS),
        "unaccepted_change": make_home(FUNDS),
        "unconfirmed_deposit": make_home(FUNDS, mined=False),
    }
    # An hour paid earlier leaves change: spendable once the network accepted it, not while only signed.
    earlier = PERIOD_END - timedelta(hours=1)
    result = settle_household(homes["change"].pk, earlier, timezone.now())
    assert send_one(Settlement, result.settlement_id, ledger) == Settlement.State.SEEN
    assert settle_household(homes["unaccepted_change"].pk, earlier, timezone.now()).status == "signed"
    return homes


def send(meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=f"2026-11-22T{t}:00Z", energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def utility_received() -> int:
    outputs = LedgerOutput.objects.filter(address=keys.utility_address())
    return outputs.aggregate(total=Sum("satoshis"))["total"] or 0


def accepted_satoshis() -> int:
    accepted = Settlement.objects.filter(state__in=[Settlement.State.SEEN, Settlement.State.CONFIRMED])
    return accepted.aggregate(total=Sum("satoshis"))["total"] or 0


def outcome(result) -> tuple:
    """A settlement result with what it signed and wrote, without database ids that differ between runs."""
    if result.settlement_id is None:
        return result.status, result.detail, None
    s = Settlement.objects.get(pk=result.settlement_id)
    written = {
        "settlement": (s.household_id, s.period_start, s.period_end, s.kwh, s.eur, s.quote_id, s.satoshis),
        "transaction": (s.fee_satoshis, s.txid, s.raw_tx, s.state),
        "lines": sorted(s.lines.values_list("usage_id", "eur", "released", "usage__settled_at")),
        "coins": sorted(s.inputs.values_list("txid", "vout", "satoshis", "state", "confirmed")),
        "change": sorted(Utxo.objects.filter(txid=s.txid).values_list("wallet_id", "vout", "satoshis", "state")),
    }
    return result.status, result.detail, written


def settled_one_by_one(household_ids: list[int]) -> dict[int, tuple]:
    """What settle_household does for each household on this database state, which is then rolled back."""
    with transaction.atomic():
        outcomes = {h: outcome(settle_household(h, PERIOD_END, timezone.now())) for h in household_ids}
        transaction.set_rollback(True)
    return outcomes


# --- The chunk signs what settle_household signs ---


def test_a_chunk_signs_for_each_household_exactly_what_settle_household_signs(mixed):
    ids = [home.pk for home in mixed.values()]
    expected = settled_one_by_one(ids)

    results = settle_many(ids, PERIOD_END, timezone.now())

    assert {household_id: outcome(result) for household_id, result in results.items()} == expected
    assert {name: results[home.pk].status for name, home in mixed.items()} == {
        "paying": "signed",
        "arrears": "arrears",
        "nothing": "nothing",
        "two_coins": "signed",
        "change": "signed",
        "unaccepted_change": "arrears",
        "unconfirmed_deposit": "arrears",
    }
    # The cases are what their names say.
    assert len(expected[mixed["two_coins"].pk][2]["coins"]) == 2
    earlier = Settlement.objects.get(household=mixed["change"], period_end=PERIOD_END - timedelta(hours=1))
    assert [coin[0] for coin in expected[mixed["change"].pk][2]["coins"]] == [earlier.txid]


def test_the_run_broadcasts_the_chunk_and_counts_where_each_household_ended(mixed, ledger):
    ledger.mine()  # the deposit is confirmed now: the run's coin sync finds out and pays from it
    tally = runs.settle_households([home.pk for home in mixed.values()], PERIOD_END)

    assert tally == {"seen": 4, "arrears": 2, "nothing": 1}
    paid = Settlement.objects.filter(period_end=PERIOD_END)
    assert set(paid.values_list("state", flat=True)) == {Settlement.State.SEEN}
    assert not Utxo.objects.filter(reserved_by__in=paid, state=Utxo.State.RESERVED).exists()
    assert (
        utility_received() == Settlement.objects.filter(state=Settlement.State.SEEN).aggregate(s=Sum("satoshis"))["s"]
    )


def test_households_are_deferred_without_a_fresh_quote(mixed, quote):
    PriceQuote.objects.filter(pk=quote.pk).update(fetched_at=NOW - timedelta(hours=2))
    results = settle_many([home.pk for home in mixed.values()], PERIOD_END, timezone.now())
    assert {result.status for result in results.values()} == {"deferred"}
    assert not Settlement.objects.filter(period_end=PERIOD_END).exists()


def test_a_household_without_a_wallet_is_left_to_settle_household(make_home, make_household):
    home, walletless = make_home(FUNDS), make_household()
    assert set(settle_many([home.pk, walletless.pk], PERIOD_END, timezone.now())) == {home.pk}


# --- Exactly once ---


def test_settling_a_chunk_twice_pays_once(mixed):
    ids = [home.pk for home in mixed.values()]
    first = runs.settle_households(ids, PERIOD_END)
    paid = Settlement.objects.count()
    second = settle_many(ids, PERIOD_END, timezone.now())

    assert first == {"seen": 3, "arrears": 3, "nothing": 1}
    assert Counter(result.status for result in second.values()) == {"nothing": 4, "arrears": 3}
    assert Settlement.objects.count() == paid
    assert utility_received() == accepted_satoshis()


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_on_overlapping_chunks_pay_each_household_once(make_home):
    homes = [make_home(FUNDS).pk for _ in range(6)]
    tallies, errors = at_once(*(partial(runs.settle_households, chunk, PERIOD_END) for chunk in (homes[:4], homes[2:])))
    assert errors == []
    # The overlap is paid by whichever worker locked it first; the other finds nothing owed.
    assert sum(tallies, Counter()) == {"seen": 6, "nothing": 2}
    assert sorted(Settlement.objects.values_list("household_id", flat=True)) == homes
    assert utility_received() == Settlement.objects.aggregate(s=Sum("satoshis"))["s"]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_workers_given_the_same_chunk_at_once_pay_each_household_once(make_home):
    # Beat enqueued an hour twice (a retry, a second beat): both workers sign the same households.
    homes = [make_home(FUNDS).pk for _ in range(8)]
    tallies, errors = at_once(*(partial(runs.settle_households, homes, PERIOD_END) for _ in range(2)))
    assert errors == []
    assert sum(tallies, Counter()) == {"seen": 8, "nothing": 8}
    assert sorted(Settlement.objects.values_list("household_id", flat=True)) == homes
    assert SettlementLine.objects.count() == HourlyUsage.objects.filter(settled_at__isnull=False).count() == 16
    assert utility_received() == Settlement.objects.aggregate(s=Sum("satoshis"))["s"]
    assert not Utxo.objects.filter(state=Utxo.State.RESERVED).exists()


def _claim_a_line(household) -> None:
    HourlyUsage.objects.filter(household=household).update(settled_at=NOW)


def _spend_a_coin(household) -> None:
    Utxo.objects.filter(wallet__household=household).update(state=Utxo.State.SPENT)


@pytest.mark.parametrize("meanwhile", [_claim_a_line, _spend_a_coin], ids=["usage line", "coin"])
def test_a_chunk_that_meets_a_concurrent_claim_rolls_back_entirely(make_home, monkeypatch, meanwhile):
    homes = [make_home(FUNDS) for _ in range(3)]
    find_coins = settlement._spendable_coins

    def racing(wallets):
        # Another run, somehow past the wallet locks, takes something the chunk is about to claim.
        coins = find_coins(wallets)
        meanwhile(homes[1])
        return coins

    monkeypatch.setattr(settlement, "_spendable_coins", racing)
    with pytest.raises(DatabaseError, match="claimed concurrently"):
        settle_many([home.pk for home in homes], PERIOD_END, timezone.now())

    assert not Settlement.objects.exists()
    assert not SettlementLine.objects.exists()
    assert not HourlyUsage.objects.filter(settled_at__isnull=False).exists()
    assert list(Utxo.objects.values_list("state", flat=True)) == [Utxo.State.AVAILABLE] * 3


def test_a_run_whose_chunk_rolled_back_settles_it_household_by_household(make_home, monkeypatch):
    homes = [make_home(FUNDS) for _ in range(3)]
    find_coins = settlement._spendable_coins

    raced = []

    def racing(wallets):
        # Another run claims one line once, while this chunk is being signed.
        coins = find_coins(wallets)
        if not raced:
            raced.append(True)
            _claim_a_line(homes[1])
        return coins

    monkeypatch.setattr(settlement, "_spendable_coins", racing)
    tally = runs.settle_households([home.pk for home in homes], PERIOD_END)

    assert tally == {"seen": 3}
    assert sorted(Settlement.objects.values_list("household_id", flat=True)) == [home.pk for home in homes]
    assert Settlement.objects.get(household=homes[1]).eur == Decimal("0.5")  # the rolled-back claim is paid in full


# --- Broadcasting a batch on the local ledger ---


def pay(key: PrivateKey, parents: list[tuple[Transaction, int]], to: str, satoshis: int, change: str) -> Transaction:
    tx = Transaction(
        [
            TransactionInput(
                source_transaction=parent, source_output_index=vout, unlocking_script_template=P2PKH().unlock(key)
            )
            for parent, vout in parents
        ],
        [TransactionOutput(P2PKH().lock(to), satoshis), TransactionOutput(P2PKH().lock(change), change=True)],
    )
    tx.fee(SatoshisPerKilobyte(100))
    tx.sign()
    return tx


def ledger_state() -> tuple[list, list]:
    return (
        sorted(LedgerTransaction.objects.values_list("txid", "fee", "block_id")),
        sorted(
            LedgerOutput.objects.values_list("transaction__txid", "vout", "satoshis", "address", "spent_by__txid"),
            key=str,
        ),
    )


def broadcast_one_by_one(ledger: LocalLedger, raws: list[str]) -> tuple[list[Reply], tuple]:
    """broadcast()'s reply to each, in order, and the ledger it leaves; all rolled back afterwards."""
    with transaction.atomic():
        replies = [ledger.broadcast(raw) for raw in raws]
        state = ledger_state()
        transaction.set_rollback(True)
    return replies, state


@pytest.fixture
def wallets() -> list[tuple[PrivateKey, str]]:
    return [(keys.household_key(index), keys.household_address(index)) for index in range(4)]


@pytest.fixture
def sent_alone(monkeypatch) -> list[str]:
    """The transactions broadcast_many hands to broadcast() one by one (on any LocalLedger: runs make their own)."""
    alone, broadcast = [], LocalLedger.broadcast

    def spy(self: LocalLedger, raw_hex: str) -> Reply:
        alone.append(raw_hex)
        return broadcast(self, raw_hex)

    monkeypatch.setattr(LocalLedger, "broadcast", spy)
    return alone


def test_a_batch_is_accepted_at_once_and_its_outputs_are_spendable(ledger, faucet, wallets, sent_alone):
    coins = [faucet(address, 100_000) for _, address in wallets[:3]]
    ledger.mine()
    payments = [
        pay(key, [(coin, 0)], wallets[3][1], 5_000, address)
        for (key, address), coin in zip(wallets, coins, strict=False)
    ]
    raws = [tx.hex() for tx in payments]
    expected = broadcast_one_by_one(ledger, raws)
    sent_alone.clear()

    assert ledger.broadcast_many(raws) == [ACCEPTED] * 3
    assert sent_alone == []
    assert (expected[0], expected[1]) == ([ACCEPTED] * 3, ledger_state())
    change = ledger.coins(wallets[0][1])
    assert [(c.txid, c.vout, c.confirmations) for c in change] == [(payments[0].txid(), 1, 0)]

    # The change is spendable at once (its parent goes through broadcast()'s chain check) and after a block.
    child = pay(wallets[0][0], [(payments[0], 1)], wallets[3][1], 5_000, wallets[0][1])
    assert ledger.broadcast_many([child.hex()]) == [ACCEPTED]
    assert sent_alone == [child.hex()]
    ledger.mine()
    grandchild = pay(wallets[0][0], [(child, 1)], wallets[3][1], 5_000, wallets[0][1])
    assert ledger.broadcast_many([grandchild.hex()]) == [ACCEPTED]
    assert sent_alone == [child.hex()]


def test_a_batch_gets_the_replies_broadcasting_one_by_one_gets(ledger, faucet, wallets, sent_alone):
    (alice, a), (bob, b), (carol, c), (dave, d) = wallets
    alice_coin, bob_coin, carol_coin, carol_other, dave_coin = (
        faucet(a, 100_000),
        faucet(b, 100_000),
        faucet(c, 100_000),
        faucet(c, 100_000),
        faucet(d, 100_000),
    )
    ledger.mine()
    pay_a = pay(alice, [(alice_coin, 0)], b, 5_000, a)
    pay_b = pay(bob, [(bob_coin, 0)], c, 5_000, b)
    conflict = pay(alice, [(alice_coin, 0)], c, 6_000, a)  # spends pay_a's coin again
    known = pay(dave, [(dave_coin, 0)], a, 5_000, d)
    assert ledger.broadcast(known.hex()) == ACCEPTED
    forged = pay(bob, [(carol_coin, 0)], b, 5_000, b)  # carol's coin, bob's signature
    child = pay(alice, [(pay_a, 1)], d, 5_000, a)  # spends pay_a's change, in the same batch
    pay_c = pay(carol, [(carol_other, 0)], d, 5_000, c)
    orphan = pay(carol, [(pay_c, 1)], d, 5_000, c)  # listed before its parent
    raws = [
        pay_a.hex(),
        pay_b.hex(),
        conflict.hex(),
        known.hex(),
        forged.hex(),
        "00" * 10,
        child.hex(),
        orphan.hex(),
        pay_c.hex(),
        pay_b.hex(),
    ]
    expected_replies, expected_state = broadcast_one_by_one(ledger, raws)
    sent_alone.clear()

    replies = ledger.broadcast_many(raws)

    assert replies == expected_replies
    assert ledger_state() == expected_state
    assert [reply.outcome for reply in replies] == [
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
        Outcome.DOUBLE_SPEND,
        Outcome.ACCEPTED,
        Outcome.REJECTED,
        Outcome.REJECTED,
        Outcome.ACCEPTED,
        Outcome.REJECTED,
        Outcome.ACCEPTED,
        Outcome.ACCEPTED,
    ]
    assert pay_a.txid() in replies[2].detail
    assert "missing inputs" in replies[7].detail
    assert sent_alone == raws[2:]  # only the first two were free of the others: they went in the batch


@pytest.mark.parametrize("racer", ["conflicting spend", "same transaction"])
def test_a_batch_that_loses_a_race_falls_back_to_one_by_one(ledger, faucet, wallets, monkeypatch, racer):
    (alice, a), (bob, b), _, (_, d) = wallets
    alice_coin, bob_coin = faucet(a, 100_000), faucet(b, 100_000)
    ledger.mine()
    pay_a = pay(alice, [(alice_coin, 0)], d, 5_000, a)
    pay_b = pay(bob, [(bob_coin, 0)], d, 5_000, b)
    rival = pay(alice, [(alice_coin, 0)], d, 7_000, a) if racer == "conflicting spend" else pay_a
    checked = local_module._batch_fee

    def racing(tx, raw, spent):
        # Another process records the rival between the batch's reads and its writes.
        if tx.txid() == pay_a.txid():
            assert ledger.broadcast(rival.hex()) == ACCEPTED
        return checked(tx, raw, spent)

    monkeypatch.setattr(local_module, "_batch_fee", racing)
    replies = ledger.broadcast_many([pay_a.hex(), pay_b.hex()])

    if racer == "conflicting spend":
        assert replies[0].outcome == Outcome.DOUBLE_SPEND and rival.txid() in replies[0].detail
        assert not LedgerTransaction.objects.filter(txid=pay_a.txid()).exists()
    else:
        assert replies[0] == Reply(Outcome.ACCEPTED, "in the mempool")
    assert replies[1] == ACCEPTED
    spender = LedgerOutput.objects.get(transaction__txid=alice_coin.txid(), vout=0).spent_by
    assert spender.txid == rival.txid()


# --- Recording what the network said ---


class Scripted:
    """The local ledger, except for the replies scripted per txid; no broadcast_many, like node and ARC."""

    name = "scripted"

    def __init__(self, ledger: LocalLedger, replies: dict[str, Reply]) -> None:
        self.ledger, self.replies = ledger, replies

    def broadcast(self, raw_hex: str) -> Reply:
        return self.replies.get(Transaction.from_hex(raw_hex).txid()) or self.ledger.broadcast(raw_hex)

    def status(self, txid: str) -> Reply:
        return self.ledger.status(txid)

    def coins(self, address: str):
        return self.ledger.coins(address)


def recorded() -> tuple:
    """Settlements, coins and open usage as broadcasting left them (coin ids change on a resync)."""
    return (
        sorted(Settlement.objects.values_list("pk", "state", "detail", "broadcast_attempts", "confirmed_at")),
        sorted(Utxo.objects.values_list("wallet_id", "txid", "vout", "satoshis", "state", "confirmed", "reserved_by")),
        sorted(HourlyUsage.objects.filter(settled_at__isnull=True).values_list("pk", "kwh", "cost_eur")),
        sorted(SettlementLine.objects.values_list("settlement_id", "usage_id", "released")),
    )


def sent_one_by_one(ids: list[int], network) -> tuple[dict, tuple]:
    with transaction.atomic():
        states = {settlement_id: send_one(Settlement, settlement_id, network) for settlement_id in ids}
        after = recorded()
        transaction.set_rollback(True)
    return states, after


def test_replies_are_recorded_as_send_one_records_them(make_home, ledger):
    homes = [make_home(FUNDS) for _ in range(4)]
    results = settle_many([home.pk for home in homes], PERIOD_END, timezone.now())
    ids = [results[home.pk].settlement_id for home in homes]
    txids = [Settlement.objects.get(pk=settlement_id).txid for settlement_id in ids]
    network = Scripted(
        ledger,
        {
            txids[1]: Reply(Outcome.REJECTED, "mandatory-script-verify-flag-failed"),
            txids[2]: Reply(Outcome.RETRY, "ARC timed out"),
            txids[3]: Reply(Outcome.CONFIRMED, "in block 7", 1),
        },
    )
    expected = sent_one_by_one(ids, network)

    states = send_many(Settlement, ids, network)

    assert (states, recorded()) == expected
    assert [states[settlement_id] for settlement_id in ids] == ["seen", "rejected", "signed", "confirmed"]


def test_a_double_spend_in_the_batch_is_recorded_as_send_one_records_it(make_home, ledger):
    homes = [make_home(FUNDS) for _ in range(3)]
    results = settle_many([home.pk for home in homes], PERIOD_END, timezone.now())
    ids = [results[home.pk].settlement_id for home in homes]
    # The middle wallet's coin is spent elsewhere (a restored backup, say) before the payment is sent.
    wallet = Wallet.objects.get(household=homes[1])
    coin = Utxo.objects.get(reserved_by_id=ids[1])
    elsewhere = pay(
        keys.household_key(wallet.derivation_index),
        [(Transaction.from_hex(coin.raw_parent), coin.vout)],
        keys.utility_address(),
        1_000,
        wallet.address,
    )
    assert ledger.broadcast(elsewhere.hex()) == ACCEPTED
    expected = sent_one_by_one(ids, ledger)

    states = send_many(Settlement, ids, ledger)

    assert (states, recorded()) == expected
    assert [states[settlement_id] for settlement_id in ids] == ["seen", "double_spend", "seen"]
    assert HourlyUsage.objects.filter(household=homes[1], settled_at__isnull=True).count() == 2


def test_a_payment_the_sweeper_recorded_meanwhile_is_recorded_once(make_home, ledger, monkeypatch):
    homes = [make_home(FUNDS) for _ in range(3)]
    results = settle_many([home.pk for home in homes], PERIOD_END, timezone.now())
    ids = [results[home.pk].settlement_id for home in homes]
    send = broadcast._broadcast

    def and_the_sweeper(raw_txs, network):
        replies = send(raw_txs, network)
        send_one(Settlement, ids[1], network)  # sends the same transaction again, records it as seen
        return replies

    monkeypatch.setattr(broadcast, "_broadcast", and_the_sweeper)
    states = send_many(Settlement, ids, ledger)

    assert states == dict.fromkeys(ids, Settlement.State.SEEN)
    assert set(Utxo.objects.filter(reserved_by__in=ids).values_list("state", flat=True)) == {Utxo.State.SPENT}
    assert utility_received() == accepted_satoshis()


def test_a_run_whose_bulk_recording_fails_finishes_household_by_household(make_home, monkeypatch):
    homes = [make_home(FUNDS) for _ in range(3)]

    def failing(kind, settlement_ids, network):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(runs, "send_many", failing)
    assert runs.settle_households([home.pk for home in homes], PERIOD_END) == {"seen": 3}
    assert utility_received() == accepted_satoshis()


# --- Hour after hour ---


def test_next_hours_change_is_spent_before_and_after_a_block(make_home, ledger, sent_alone):
    homes = [make_home(FUNDS, readings=(("10:00", "100"), ("11:00", "101"))) for _ in range(3)]
    meters = [home.meters.get() for home in homes]
    ids = [home.pk for home in homes]

    def hour(end: datetime, register: str) -> Counter:
        for meter in meters:
            send(meter, (f"{end:%H:%M}", register))
        PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=NOW)
        return runs.settle_households(ids, end)

    assert hour(datetime(2026, 11, 22, 12, 0, tzinfo=UTC), "102") == {"seen": 3}
    assert len(sent_alone) == 0  # confirmed deposits: all in the batch
    assert hour(datetime(2026, 11, 22, 13, 0, tzinfo=UTC), "103") == {"seen": 3}
    assert len(sent_alone) == 3  # unconfirmed change: broadcast() checks the chain
    ledger.mine()
    assert hour(datetime(2026, 11, 22, 14, 0, tzinfo=UTC), "104") == {"seen": 3}
    assert len(sent_alone) == 3
    assert Settlement.objects.filter(state=Settlement.State.SEEN).count() == 9


def test_reconciliation_holds_after_several_hourly_runs(make_meter, ledger):
    meters = [make_meter()[0] for _ in range(3)]
    wallets = [open_wallet(meter.household) for meter in meters]
    for wallet in wallets[:2]:
        ledger.fund(wallet.address, 20_000_000)
    ledger.mine()
    for wallet in wallets[:2]:
        wallet.sync_coins(ledger)
    ids = [meter.household_id for meter in meters]
    start = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)
    registers = [Decimal("1000")] * 3
    late = []
    tallies = Counter()
    for hour in range(8):
        moment = start + timedelta(hours=hour, minutes=30)
        for n, meter in enumerate(meters):
            registers[n] += Decimal(hour % 4 + n) / 2 + Decimal("0.25")
            reading = (meter, moment, registers[n])
            # The second household's every third reading arrives two hours late, after its hours were paid.
            if n == 1 and hour % 3 == 1:
                late.append(reading)
            else:
                _send_at(*reading)
        run_at = start + timedelta(hours=hour + 1, minutes=7)
        with time_machine.travel(run_at, tick=False):
            if hour % 3 == 0:
                for reading in late:
                    _send_at(*reading)
                late = []
            if hour == 3:  # the third household pays its arrears once its deposit is in a block
                ledger.fund(wallets[2].address, 20_000_000)
                ledger.mine()
            PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=run_at)
            tallies += runs.settle_households(ids, run_at.replace(minute=0))
            if hour % 2:
                ledger.mine()

    # The first hour has one reading each (no usage yet); the late household skips the hours it is
    # late for; the third is in arrears until its deposit is in a block.
    assert tallies == {"seen": 16, "nothing": 6, "arrears": 2}
    usage = HourlyUsage.objects.all()
    total = usage.aggregate(eur=Sum("cost_eur"))["eur"]
    settled = SettlementLine.objects.filter(released=False).aggregate(eur=Sum("eur"))["eur"]
    unsettled = usage.filter(settled_at__isnull=True).aggregate(eur=Sum("cost_eur"))["eur"] or 0
    assert total == settled + unsettled
    assert settled == Settlement.objects.aggregate(eur=Sum("eur"))["eur"]
    settlements = list(Settlement.objects.all())
    assert len({s.txid for s in settlements}) == len(settlements)
    assert utility_received() == sum(s.satoshis for s in settlements)
    for wallet in wallets:
        on_ledger = LedgerOutput.objects.filter(address=wallet.address, spent_by__isnull=True)
        assert balance_satoshis(wallet) == on_ledger.aggregate(s=Sum("satoshis"))["s"]


def _send_at(meter, moment: datetime, register: Decimal) -> None:
    assert (
        ingest_readings(meter.pk, [(0, ReadingIn(timestamp=moment, energy_kwh=register))], timezone.now()).rejected
        == []
    )
