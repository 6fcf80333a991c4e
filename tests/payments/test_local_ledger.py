"""The local ledger accepts exactly what a BSV node would, and nothing else changes it."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from bsv import P2PKH, OpReturn, PrivateKey, Script, Transaction, TransactionInput, TransactionOutput
from bsv.constants import Network
from bsv.fee_models import SatoshisPerKilobyte
from django.db import connection

from payments import keys
from payments.models import LedgerBlock, LedgerOutput, LedgerTransaction
from payments.networks import Outcome
from payments.networks import local as local_module
from payments.networks.local import MAX_UNCONFIRMED_CHAIN, LocalLedger

POLICY = SatoshisPerKilobyte(100)
postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL's row locks")


@pytest.fixture
def alice() -> PrivateKey:
    return keys.household_key(0)


@pytest.fixture
def alice_address() -> str:
    return keys.household_address(0)


@pytest.fixture
def bob_address() -> str:
    return keys.household_address(1)


def pay(
    key: PrivateKey,
    parents: list[tuple[Transaction, int]],
    outputs: list[tuple[str, int] | TransactionOutput],
    *,
    change_to: str | None = None,
    fee: SatoshisPerKilobyte | int = POLICY,
) -> Transaction:
    """A P2PKH payment signed with bsv-sdk, the way a wallet builds one."""
    tx = Transaction(
        [
            TransactionInput(
                source_transaction=parent, source_output_index=vout, unlocking_script_template=P2PKH().unlock(key)
            )
            for parent, vout in parents
        ],
        [
            out if isinstance(out, TransactionOutput) else TransactionOutput(P2PKH().lock(out[0]), out[1])
            for out in outputs
        ],
    )
    if change_to:
        tx.add_output(TransactionOutput(P2PKH().lock(change_to), change=True))
    tx.fee(fee)
    tx.sign()
    return tx


def paying_fee(build: Callable[[int], Transaction], fee_for_size: Callable[[int], int]) -> Transaction:
    """Build a transaction whose fee is exactly ``fee_for_size(its own size)``.

    A signature's length varies by a byte, so the size is only known after signing: rebuild until
    the fee and the size agree.
    """
    fee = 0
    for _ in range(10):
        tx = build(fee)
        wanted = fee_for_size(tx.byte_length())
        if wanted == fee:
            return tx
        fee = wanted
    raise AssertionError("the fee did not settle")


def ledger_state() -> tuple[list, list]:
    return (
        list(LedgerTransaction.objects.order_by("pk").values_list("txid", "block_id")),
        list(LedgerOutput.objects.order_by("pk").values_list("transaction__txid", "vout", "spent_by_id")),
    )


def assert_rejected_without_change(ledger: LocalLedger, tx: Transaction | str, reason: str) -> None:
    before = ledger_state()
    reply = ledger.broadcast(tx if isinstance(tx, str) else tx.hex())
    assert reply.outcome == Outcome.REJECTED
    assert reason in reply.detail
    assert ledger_state() == before


# --- Accepting payments ---


def test_a_signed_payment_is_accepted_and_its_outputs_become_coins(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)

    reply = ledger.broadcast(tx.hex())

    assert reply.outcome == Outcome.ACCEPTED
    assert [(c.txid, c.vout, c.satoshis, c.confirmations) for c in ledger.coins(bob_address)] == [
        (tx.txid(), 0, 5_000, 0)
    ]
    (change,) = ledger.coins(alice_address)
    assert (change.txid, change.vout, change.satoshis) == (tx.txid(), 1, 100_000 - 5_000 - tx.get_fee())
    assert Transaction.from_hex(change.raw_parent).txid() == tx.txid()
    stored = LedgerTransaction.objects.get(txid=tx.txid())
    assert (stored.raw, stored.fee, stored.is_faucet, stored.block) == (tx.hex(), tx.get_fee(), False, None)
    assert LedgerOutput.objects.get(transaction__txid=parent.txid(), vout=0).spent_by == stored


def test_a_coin_can_be_spent_by_the_wallet_that_received_it(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    first = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)
    ledger.broadcast(first.hex())
    (coin,) = ledger.coins(alice_address)

    second = pay(
        alice, [(Transaction.from_hex(coin.raw_parent), coin.vout)], [(bob_address, 7_000)], change_to=alice_address
    )

    assert ledger.broadcast(second.hex()).outcome == Outcome.ACCEPTED
    assert sorted(c.satoshis for c in ledger.coins(bob_address)) == [5_000, 7_000]


def test_a_payment_with_several_inputs_is_verified_input_by_input(ledger, faucet, alice, alice_address, bob_address):
    first, second = faucet(alice_address, 3_000), faucet(alice_address, 4_000)
    tx = pay(alice, [(first, 0), (second, 0)], [(bob_address, 6_500)], change_to=alice_address)

    assert ledger.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    assert ledger.coins(bob_address)[0].satoshis == 6_500


def test_broadcasting_the_same_transaction_twice_is_harmless(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)
    ledger.broadcast(tx.hex())
    before = ledger_state()

    again = ledger.broadcast(tx.hex())
    ledger.mine()
    after_mining = ledger.broadcast(tx.hex())

    assert again.outcome == Outcome.ACCEPTED
    assert ledger_state()[1] == before[1]
    assert (after_mining.outcome, after_mining.confirmations) == (Outcome.CONFIRMED, 1)
    assert LedgerTransaction.objects.filter(txid=tx.txid()).count() == 1


def test_a_fee_of_exactly_100_sat_per_kb_rounded_up_is_enough(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    tx = paying_fee(
        lambda fee: pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address, fee=fee),
        lambda size: -(-size * 100 // 1000),
    )

    assert ledger.broadcast(tx.hex()).outcome == Outcome.ACCEPTED


def test_a_zero_satoshi_op_return_output_is_not_dust(ledger, faucet, alice, alice_address):
    parent = faucet(alice_address, 10_000)
    data = TransactionOutput(OpReturn().lock(["energypay", "hour 2026-11-22T10"]), 0)
    tx = pay(alice, [(parent, 0)], [data], change_to=alice_address)

    assert ledger.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    data = LedgerOutput.objects.get(transaction__txid=tx.txid(), vout=0)
    assert (data.satoshis, data.address) == (0, "")


# --- Refusing what a node would refuse ---


def test_spending_a_spent_output_again_is_a_double_spend(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    first = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)
    second = pay(alice, [(parent, 0)], [(bob_address, 6_000)], change_to=alice_address)
    ledger.broadcast(first.hex())
    before = ledger_state()

    reply = ledger.broadcast(second.hex())

    assert reply.outcome == Outcome.DOUBLE_SPEND
    assert "txn-mempool-conflict" in reply.detail
    assert first.txid() in reply.detail
    assert ledger_state() == before


def test_a_double_spend_of_a_confirmed_spend_is_still_a_double_spend(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    ledger.broadcast(pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address).hex())
    ledger.mine()

    reply = ledger.broadcast(pay(alice, [(parent, 0)], [(bob_address, 6_000)], change_to=alice_address).hex())

    assert reply.outcome == Outcome.DOUBLE_SPEND
    assert "in block 1" in reply.detail


def test_a_payment_signed_by_another_key_is_rejected(ledger, faucet, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    thief = keys.household_key(2)
    tx = pay(thief, [(parent, 0)], [(bob_address, 5_000)], change_to=keys.household_address(2))

    assert_rejected_without_change(ledger, tx, "mandatory-script-verify-flag-failed: input 0")


def test_a_payment_changed_after_signing_is_rejected(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)
    # Redirect the payment; the signature still commits to the old output.
    tx.outputs[0].locking_script = P2PKH().lock(keys.household_address(2))

    assert_rejected_without_change(ledger, tx, "mandatory-script-verify-flag-failed")


def test_outputs_above_the_inputs_are_rejected(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 10_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 10_001)])

    assert_rejected_without_change(ledger, tx, "bad-txns-in-belowout")


def test_a_zero_satoshi_payment_output_is_dust(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 10_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 0)], change_to=alice_address)

    assert_rejected_without_change(ledger, tx, "dust: output 0")


def test_a_fee_one_satoshi_below_100_sat_per_kb_is_too_low(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    tx = paying_fee(
        lambda fee: pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address, fee=fee),
        lambda size: -(-size * 100 // 1000) - 1,
    )

    assert_rejected_without_change(ledger, tx, "fee too low")


def test_a_fee_follows_the_configured_rate(ledger, faucet, alice, alice_address, bob_address, settings):
    settings.FEE_SATS_PER_KB = 500
    parent = faucet(alice_address, 100_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)  # 100 sat/kB

    assert_rejected_without_change(ledger, tx, "fee too low")


def test_spending_an_unknown_output_is_rejected_as_missing_inputs(ledger, alice, alice_address, bob_address):
    stranger = Transaction([], [TransactionOutput(P2PKH().lock(alice_address), 50_000)])  # never broadcast
    tx = pay(alice, [(stranger, 0)], [(bob_address, 5_000)], change_to=alice_address)

    assert_rejected_without_change(ledger, tx, "missing inputs")


def test_spending_one_output_twice_in_one_transaction_is_rejected(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 10_000)
    tx = pay(alice, [(parent, 0), (parent, 0)], [(bob_address, 15_000)], change_to=alice_address)

    assert_rejected_without_change(ledger, tx, "bad-txns-inputs-duplicate")


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda raw: "not hex", id="not-hex"),
        pytest.param(lambda raw: "", id="empty"),
        pytest.param(lambda raw: raw[:100], id="truncated"),
        pytest.param(lambda raw: raw[:-2], id="truncated-locktime"),
        pytest.param(lambda raw: raw + "00", id="trailing-byte"),
    ],
)
def test_malformed_hex_is_rejected(ledger, faucet, alice, alice_address, bob_address, mangle):
    parent = faucet(alice_address, 10_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)

    assert_rejected_without_change(ledger, mangle(tx.hex()), "malformed transaction")


# --- Unconfirmed chains ---


def test_the_26th_transaction_of_an_unconfirmed_chain_is_rejected(ledger, faucet, alice, alice_address):
    parent = faucet(alice_address, 100_000)
    ledger.mine()
    for _ in range(MAX_UNCONFIRMED_CHAIN):
        parent_tx = pay(alice, [(parent, 0)], [], change_to=alice_address)
        assert ledger.broadcast(parent_tx.hex()).outcome == Outcome.ACCEPTED
        parent = parent_tx

    too_long = pay(alice, [(parent, 0)], [], change_to=alice_address)
    assert_rejected_without_change(ledger, too_long, "too-long-mempool-chain")

    ledger.mine()
    assert ledger.broadcast(too_long.hex()).outcome == Outcome.ACCEPTED


def test_an_unconfirmed_faucet_transaction_counts_in_the_chain(ledger, faucet, alice, alice_address):
    parent = faucet(alice_address, 100_000)
    for _ in range(MAX_UNCONFIRMED_CHAIN - 1):
        parent_tx = pay(alice, [(parent, 0)], [], change_to=alice_address)
        assert ledger.broadcast(parent_tx.hex()).outcome == Outcome.ACCEPTED
        parent = parent_tx

    reply = ledger.broadcast(pay(alice, [(parent, 0)], [], change_to=alice_address).hex())

    assert reply.outcome == Outcome.REJECTED
    assert "too-long-mempool-chain" in reply.detail


# --- Status, blocks and the faucet ---


def test_status_follows_a_transaction_from_mempool_to_deeper_blocks(ledger, faucet, alice, alice_address, bob_address):
    parent = faucet(alice_address, 100_000)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)
    ledger.broadcast(tx.hex())
    assert ledger.status(tx.txid()).outcome == Outcome.ACCEPTED
    assert ledger.coins(bob_address)[0].confirmations == 0

    first = ledger.mine()
    reply = ledger.status(tx.txid())
    assert (first.height, reply.outcome, reply.confirmations) == (1, Outcome.CONFIRMED, 1)

    second = ledger.mine()
    assert (second.height, ledger.status(tx.txid()).confirmations) == (2, 2)
    assert ledger.coins(bob_address)[0].confirmations == 2
    assert set(first.txs.values_list("txid", flat=True)) == {parent.txid(), tx.txid()}
    assert not second.txs.exists()


def test_an_unknown_transaction_has_status_unknown(ledger):
    assert ledger.status("ab" * 32).outcome == Outcome.UNKNOWN


def test_the_faucet_pays_a_coin_bsv_sdk_can_spend(ledger, faucet, alice_address):
    parent = faucet(alice_address, 12_345)

    (coin,) = ledger.coins(alice_address)
    assert (coin.txid, coin.vout, coin.satoshis, coin.confirmations) == (parent.txid(), 0, 12_345, 0)
    assert LedgerTransaction.objects.get(txid=parent.txid()).is_faucet
    assert parent.outputs[0].locking_script == P2PKH().lock(alice_address)


def test_every_faucet_payment_has_its_own_txid(ledger, alice_address):
    assert ledger.fund(alice_address, 1_000) != ledger.fund(alice_address, 1_000)
    assert sum(coin.satoshis for coin in ledger.coins(alice_address)) == 2_000


@pytest.mark.parametrize(
    ("address", "satoshis"),
    [
        pytest.param("not-an-address", 1_000, id="garbage"),
        pytest.param(PrivateKey(network=Network.MAINNET).address(), 1_000, id="mainnet-address-on-local"),
        pytest.param("", 1_000, id="empty"),
    ],
)
def test_the_faucet_refuses_bad_addresses(ledger, address, satoshis):
    with pytest.raises(ValueError, match="address"):
        ledger.fund(address, satoshis)
    assert not LedgerTransaction.objects.exists()


@pytest.mark.parametrize("satoshis", [0, -1, 21_000_000 * 100_000_000 + 1])
def test_the_faucet_refuses_amounts_out_of_range(ledger, alice_address, satoshis):
    with pytest.raises(ValueError, match="Satoshis"):
        ledger.fund(alice_address, satoshis)
    assert not LedgerTransaction.objects.exists()


def test_a_faucet_lookalike_cannot_be_broadcast(ledger, alice_address):
    fake = Transaction(
        [TransactionInput(source_txid="00" * 32, source_output_index=0xFFFFFFFF, unlocking_script=Script("0101"))],
        [TransactionOutput(P2PKH().lock(alice_address), 1_000_000)],
    )

    assert_rejected_without_change(ledger, fake, "missing inputs")


# --- Concurrency (PostgreSQL: SQLite serializes writers, so there is no race to lose) ---


def run_together(*jobs: Callable[[], object]) -> list[object]:
    results: list[object] = [None] * len(jobs)

    def run(index: int, job: Callable[[], object]) -> None:
        try:
            results[index] = job()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def checks_pass_together(monkeypatch):
    """Hold each broadcast after its checks until both got there, so both saw the coin unspent."""
    barrier = threading.Barrier(2, timeout=10)
    verify = local_module._verify_scripts

    def verify_then_wait(tx, spent):
        verify(tx, spent)
        barrier.wait()

    monkeypatch.setattr(local_module, "_verify_scripts", verify_then_wait)


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_of_two_concurrent_conflicting_spends_exactly_one_is_accepted(
    checks_pass_together, alice, alice_address, bob_address
):
    ledger = LocalLedger()
    parent = Transaction.from_hex(LedgerTransaction.objects.get(txid=ledger.fund(alice_address, 100_000)).raw)
    first = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)
    second = pay(alice, [(parent, 0)], [(bob_address, 6_000)], change_to=alice_address)

    replies = run_together(lambda: LocalLedger().broadcast(first.hex()), lambda: LocalLedger().broadcast(second.hex()))

    assert sorted(reply.outcome for reply in replies) == [Outcome.ACCEPTED, Outcome.DOUBLE_SPEND]
    winner = first if replies[0].outcome == Outcome.ACCEPTED else second
    assert LedgerOutput.objects.get(transaction__txid=parent.txid()).spent_by.txid == winner.txid()
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_same_transaction_broadcast_twice_at_once_is_stored_once(
    checks_pass_together, alice, alice_address, bob_address
):
    ledger = LocalLedger()
    parent = Transaction.from_hex(LedgerTransaction.objects.get(txid=ledger.fund(alice_address, 100_000)).raw)
    tx = pay(alice, [(parent, 0)], [(bob_address, 5_000)], change_to=alice_address)

    replies = run_together(lambda: LocalLedger().broadcast(tx.hex()), lambda: LocalLedger().broadcast(tx.hex()))

    assert [reply.outcome for reply in replies] == [Outcome.ACCEPTED, Outcome.ACCEPTED]
    assert LedgerTransaction.objects.filter(txid=tx.txid()).count() == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_miners_at_once_build_two_blocks_on_each_other(alice_address):
    LocalLedger().fund(alice_address, 1_000)

    blocks = run_together(LocalLedger().mine, LocalLedger().mine)

    assert sorted(block.height for block in blocks) == [1, 2]
    assert list(LedgerBlock.objects.order_by("height").values_list("height", flat=True)) == [1, 2]
    assert LedgerTransaction.objects.get().block.height == 1
