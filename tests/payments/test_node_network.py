"""The regtest network: what a real Bitcoin SV node (v1.0.13) answers, as NodeRpc reports it.

Tests that need the node run when BSV_REGTEST_RPC_URL points at one (``.ci/run`` starts it with
``.ci/start-bsv-node.sh``) and are skipped otherwise. Tests of a node that is down or misbehaves
need no node. Tests using the node take turns (a file lock), since pytest-xdist runs them in
several processes and a block mined by one would confirm another's transactions mid-test.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import responses
from bsv import P2PKH, PrivateKey, Transaction, TransactionInput, TransactionOutput
from bsv.constants import Network
from bsv.fee_models import SatoshisPerKilobyte

from payments.networks import Coin, Outcome
from payments.networks.node import NodeError, NodeRpc, NodeUnavailable

RPC_URL = os.environ.get("BSV_REGTEST_RPC_URL", "")
FEE_RATE = 100  # sat/kB: ours, and the node's -minminingtxfee


@contextmanager
def regtest_node() -> Iterator[NodeRpc]:
    """The node at BSV_REGTEST_RPC_URL, held for the caller alone; skips the test without one."""
    if not RPC_URL:
        pytest.skip("BSV_REGTEST_RPC_URL is not set; start a node with .ci/start-bsv-node.sh")
    node = NodeRpc(RPC_URL)
    lock = Path(tempfile.gettempdir()) / f"energypay-regtest-{node.endpoint.rsplit(':', 1)[-1].strip('/')}.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            balance = node.call("getbalance")
        except NodeError as exc:
            pytest.fail(f"BSV_REGTEST_RPC_URL is set but the node does not answer: {exc}")
        if balance < 1:  # a node started by hand: mature some coinbase coins to fund wallets with
            node.mine(101)
        yield node


@pytest.fixture
def node() -> Iterator[NodeRpc]:
    with regtest_node() as node:
        yield node


@dataclass
class Payer:
    """A fresh key holding one node-funded coin."""

    key: PrivateKey
    address: str
    coin: Coin

    @property
    def parent(self) -> Transaction:
        return Transaction.from_hex(self.coin.raw_parent)


def new_address() -> str:
    return PrivateKey().address(network=Network.TESTNET)


def funded(node: NodeRpc, satoshis: int = 1_000_000, *, mine: bool = False) -> Payer:
    key = PrivateKey()
    address = key.address(network=Network.TESTNET)
    txid = node.fund(address, satoshis)
    if mine:
        node.mine()
    [coin] = node.coins(address)
    assert coin.txid == txid
    return Payer(key, address, coin)


def spend(
    parent: Transaction,
    vout: int,
    key: PrivateKey,
    pays: list[tuple[str, int]],
    *,
    change_to: str | None = None,
    rate: int = FEE_RATE,
) -> Transaction:
    """Sign a P2PKH spend of ``parent``'s output; with ``change_to`` the rest minus the fee goes back."""
    tx = Transaction()
    tx.add_input(
        TransactionInput(
            source_transaction=parent, source_output_index=vout, unlocking_script_template=P2PKH().unlock(key)
        )
    )
    for address, satoshis in pays:
        tx.add_output(TransactionOutput(locking_script=P2PKH().lock(address), satoshis=satoshis))
    if change_to:
        tx.add_output(TransactionOutput(locking_script=P2PKH().lock(change_to), change=True))
        tx.fee(SatoshisPerKilobyte(rate))
    tx.sign()
    return tx


def payment(payer: Payer, satoshis: int = 10_000, *, rate: int = FEE_RATE) -> Transaction:
    return spend(
        payer.parent, payer.coin.vout, payer.key, [(new_address(), satoshis)], change_to=payer.address, rate=rate
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- Broadcasting ---


def test_a_signed_payment_is_accepted_then_confirmed_with_growing_confirmations(node):
    tx = payment(funded(node))
    assert node.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    assert node.status(tx.txid()).outcome == Outcome.ACCEPTED
    node.mine()
    first = node.status(tx.txid())
    assert first.outcome == Outcome.CONFIRMED
    assert first.confirmations >= 1
    assert first.detail.startswith("in block ")
    node.mine(2)
    later = node.status(tx.txid())
    assert later.outcome == Outcome.CONFIRMED
    assert later.confirmations >= first.confirmations + 2


def test_broadcasting_the_same_payment_again_is_harmless(node):
    tx = payment(funded(node))
    assert node.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    # The node: -27 "Transaction already in the mempool".
    again = node.broadcast(tx.hex())
    assert (again.outcome, again.detail) == (Outcome.ACCEPTED, "in the mempool")
    node.mine()
    # The node: -26 "257: txn-already-known"; the status says where it is.
    mined = node.broadcast(tx.hex())
    assert mined.outcome == Outcome.CONFIRMED
    assert mined.confirmations >= 1


def test_a_second_spend_of_a_coin_in_the_mempool_is_a_double_spend(node):
    payer = funded(node)
    assert node.broadcast(payment(payer, 10_000).hex()).outcome == Outcome.ACCEPTED
    reply = node.broadcast(payment(payer, 20_000).hex())
    assert (reply.outcome, reply.detail) == (Outcome.DOUBLE_SPEND, "258: txn-mempool-conflict")


def test_a_second_spend_of_a_coin_spent_in_a_block_is_a_double_spend(node):
    payer = funded(node)
    assert node.broadcast(payment(payer, 10_000).hex()).outcome == Outcome.ACCEPTED
    node.mine()
    reply = node.broadcast(payment(payer, 20_000).hex())
    # The node only says "Missing inputs"; the parent is known and its output gone, so it was spent.
    assert reply.outcome == Outcome.DOUBLE_SPEND
    assert reply.detail == f"Missing inputs: input 0 ({payer.coin.txid}:{payer.coin.vout}) is spent in a block"


def test_a_spend_of_a_transaction_the_node_never_saw_is_rejected_and_not_kept(node):
    payer = funded(node)
    parent = payment(payer)  # signed, never sent
    child = spend(parent, 1, payer.key, [(new_address(), 1_000)], change_to=payer.address)
    reply = node.broadcast(child.hex())
    assert reply.outcome == Outcome.REJECTED
    assert reply.detail == f"Missing inputs: input 0 spends {parent.txid()}:1, a transaction the node does not know"
    # No orphan pool for RPC: the child stays unknown even once its parent is in a block, so the
    # refusal is final and a retry of the same hours can never pay twice.
    assert node.broadcast(parent.hex()).outcome == Outcome.ACCEPTED
    node.mine()
    assert node.status(child.txid()).outcome == Outcome.UNKNOWN


def test_a_zero_satoshi_payment_is_rejected_as_dust(node):
    payer = funded(node)
    reply = node.broadcast(payment(payer, 0).hex())
    assert (reply.outcome, reply.detail) == (Outcome.REJECTED, "64: dust")


def test_a_signature_by_the_wrong_key_is_rejected(node):
    payer = funded(node)
    tx = spend(payer.parent, payer.coin.vout, PrivateKey(), [(new_address(), 1_000)], change_to=payer.address)
    reply = node.broadcast(tx.hex())
    assert reply.outcome == Outcome.REJECTED
    assert reply.detail == "16: mandatory-script-verify-flag-failed (Script failed an OP_EQUALVERIFY operation)"


def test_outputs_above_the_inputs_are_rejected(node):
    payer = funded(node, 100_000)
    tx = spend(payer.parent, payer.coin.vout, payer.key, [(new_address(), 200_000)])
    reply = node.broadcast(tx.hex())
    assert (reply.outcome, reply.detail) == (Outcome.REJECTED, "16: bad-txns-in-belowout")


def test_bytes_that_are_not_a_transaction_are_rejected(node):
    reply = node.broadcast("00")
    assert (reply.outcome, reply.detail) == (Outcome.REJECTED, "TX decode failed")


# --- Fees and unconfirmed chains (-minminingtxfee=0.00000100, i.e. 100 sat/kB) ---


def test_a_fee_below_the_mining_minimum_is_accepted_but_not_mined_until_a_child_pays_for_it(node):
    payer = funded(node, mine=True)
    cheap = payment(payer, rate=1)  # 1 sat/kB: 1 satoshi for ~226 bytes
    assert node.broadcast(cheap.hex()).outcome == Outcome.ACCEPTED
    node.mine(2)
    stuck = node.status(cheap.txid())
    assert (stuck.outcome, stuck.confirmations) == (Outcome.ACCEPTED, 0)
    # Child pays for parent: enough fee for both at 100 sat/kB pulls the parent into the next block.
    change = len(cheap.outputs) - 1
    child = spend(cheap, change, payer.key, [(new_address(), cheap.outputs[change].satoshis - 100)])
    assert node.broadcast(child.hex()).outcome == Outcome.ACCEPTED
    node.mine()
    assert node.status(cheap.txid()).outcome == Outcome.CONFIRMED
    assert node.status(child.txid()).outcome == Outcome.CONFIRMED


def test_a_child_paying_only_for_itself_leaves_a_low_fee_parent_and_itself_unmined(node):
    payer = funded(node, mine=True)
    cheap = payment(payer, rate=1)
    child = spend(cheap, 1, payer.key, [(new_address(), 1_000)], change_to=payer.address)  # 100 sat/kB
    assert node.broadcast(cheap.hex()).outcome == Outcome.ACCEPTED
    assert node.broadcast(child.hex()).outcome == Outcome.ACCEPTED
    node.mine()
    assert [node.status(tx.txid()).outcome for tx in (cheap, child)] == [Outcome.ACCEPTED, Outcome.ACCEPTED]


def test_a_26th_unconfirmed_low_fee_link_is_refused_and_more_blocks_do_not_help(node):
    payer = funded(node, mine=True)
    parent, vout = payer.parent, payer.coin.vout
    for _ in range(25):
        link = spend(parent, vout, payer.key, [(new_address(), 1_000)], change_to=payer.address, rate=1)
        assert node.broadcast(link.hex()).outcome == Outcome.ACCEPTED
        parent, vout = link, 1
    last = spend(parent, vout, payer.key, [(new_address(), 1_000)], change_to=payer.address, rate=1)
    reply = node.broadcast(last.hex())
    assert (reply.outcome, reply.detail) == (Outcome.RETRY, "64: too-long-mempool-chain")
    node.mine()  # the low-fee ancestors are not mined, so the chain is as long as before
    assert node.broadcast(last.hex()).outcome == Outcome.RETRY


def test_payments_at_the_mining_fee_chain_beyond_25_and_are_all_mined(node):
    payer = funded(node, mine=True)
    parent, vout, chain = payer.parent, payer.coin.vout, []
    for _ in range(30):
        link = spend(parent, vout, payer.key, [(new_address(), 1_000)], change_to=payer.address)
        assert node.broadcast(link.hex()).outcome == Outcome.ACCEPTED
        parent, vout = link, 1
        chain.append(link.txid())
    node.mine()
    assert {node.status(txid).outcome for txid in chain} == {Outcome.CONFIRMED}


# --- Status and coins ---


def test_an_unknown_txid_is_unknown(node):
    reply = node.status("ab" * 32)
    assert reply.outcome == Outcome.UNKNOWN
    assert reply.detail.startswith("No such mempool or blockchain transaction")


def test_coins_lists_a_funded_coin_with_its_parent_and_follows_spends(node):
    key = PrivateKey()
    address = key.address(network=Network.TESTNET)
    txid = node.fund(address, 12_345_679)
    [coin] = node.coins(address)
    assert (coin.txid, coin.satoshis, coin.confirmations) == (txid, 12_345_679, 0)
    parent = Transaction.from_hex(coin.raw_parent)
    assert parent.txid() == txid
    assert parent.outputs[coin.vout].locking_script.serialize() == P2PKH().lock(address).serialize()
    node.mine()
    [coin] = node.coins(address)
    assert coin.confirmations >= 1
    # Spent coins go at once, even by an unmined transaction; the change comes back unconfirmed.
    tx = spend(parent, coin.vout, key, [(new_address(), 10_000)], change_to=address)
    assert node.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    [change] = node.coins(address)
    assert (change.txid, change.vout, change.satoshis) == (tx.txid(), 1, tx.outputs[1].satoshis)
    assert change.confirmations == 0
    assert Transaction.from_hex(change.raw_parent).txid() == tx.txid()


def test_coins_of_a_parent_paying_twice_read_the_parent_once(node):
    key = PrivateKey()
    address = key.address(network=Network.TESTNET)
    payer = funded(node)
    tx = spend(payer.parent, payer.coin.vout, payer.key, [(address, 5_000), (address, 7_000)], change_to=payer.address)
    node.watch(address)
    assert node.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    coins = node.coins(address)
    assert [(c.txid, c.vout, c.satoshis) for c in coins] == [(tx.txid(), 0, 5_000), (tx.txid(), 1, 7_000)]
    assert coins[0].raw_parent is coins[1].raw_parent


def test_an_address_paid_before_the_node_watched_it_needs_a_rescan(node):
    # A deposit from outside: from a key the node's wallet does not follow (a payment from the
    # node's own wallet would be in it already, and show up without a rescan).
    outsider = PrivateKey()
    parent = Transaction.from_hex(
        node.call("getrawtransaction", node.call("sendtoaddress", outsider.address(network=Network.TESTNET), "0.01"), 0)
    )
    vout = next(i for i, out in enumerate(parent.outputs) if out.satoshis == 1_000_000)
    address = new_address()
    deposit = spend(parent, vout, outsider, [(address, 50_000)], change_to=new_address())
    assert node.broadcast(deposit.hex()).outcome == Outcome.ACCEPTED
    node.mine()
    assert node.coins(address) == []  # watched from now on, but the deposit came before
    node.watch(address, rescan=True)
    assert [(c.txid, c.satoshis) for c in node.coins(address)] == [(deposit.txid(), 50_000)]


def test_an_address_of_another_network_is_refused(node):
    with pytest.raises(ValueError, match="not a regtest"):
        node.coins(PrivateKey().address(network=Network.MAINNET))


# --- A node that is down or misbehaves (no node needed) ---


def test_a_node_that_is_down_means_retry_not_an_exception():
    down = NodeRpc(f"http://user:secret-pw@127.0.0.1:{closed_port()}")
    reply = down.broadcast("0100")
    assert reply.outcome == Outcome.RETRY
    assert "cannot reach the node" in reply.detail
    assert down.status("ab" * 32).outcome == Outcome.RETRY
    with pytest.raises(NodeUnavailable):
        down.coins(new_address())


URL = "http://energypay:secret-pw@127.0.0.1:18332"
ENDPOINT = "http://127.0.0.1:18332/"


@responses.activate
def test_an_http_error_without_a_json_rpc_reply_means_retry():
    responses.post(ENDPOINT, status=503, body="Work queue depth exceeded")
    reply = NodeRpc(URL).broadcast("0100")
    assert (reply.outcome, reply.detail) == (
        Outcome.RETRY,
        "sendrawtransaction: the node answered HTTP 503 without a JSON-RPC reply",
    )


@responses.activate
def test_a_timeout_means_retry():
    responses.post(ENDPOINT, body=requests.ReadTimeout("slow"))
    reply = NodeRpc(URL).status("ab" * 32)
    assert reply.outcome == Outcome.RETRY
    assert "did not answer in time" in reply.detail


@responses.activate
def test_refused_credentials_mean_retry_and_are_never_shown():
    responses.post(ENDPOINT, status=401, body="")
    node = NodeRpc(URL)
    reply = node.broadcast("0100")
    assert (reply.outcome, reply.detail) == (
        Outcome.RETRY,
        "sendrawtransaction: the node refused our RPC credentials (HTTP 401)",
    )
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")
    assert "secret-pw" not in repr(node)
    assert "secret-pw" not in responses.calls[0].request.url


@responses.activate
def test_an_rpc_error_the_node_should_not_give_means_retry():
    responses.post(ENDPOINT, status=500, json={"result": None, "error": {"code": -1, "message": "oops"}, "id": 1})
    assert NodeRpc(URL).broadcast("0100").outcome == Outcome.RETRY


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("66: min relay fee not met", Outcome.REJECTED),  # older nodes; v1.0.13 has no relay fee
        ("66: insufficient priority", Outcome.REJECTED),
        ("64: dust", Outcome.REJECTED),
        ("258: txn-mempool-conflict", Outcome.DOUBLE_SPEND),
        ("18: txn-double-spend-detected", Outcome.DOUBLE_SPEND),
        ("64: too-long-mempool-chain", Outcome.RETRY),
    ],
)
@responses.activate
def test_refusals_by_reason(message, outcome):
    responses.post(ENDPOINT, status=500, json={"result": None, "error": {"code": -26, "message": message}, "id": 1})
    reply = NodeRpc(URL).broadcast("0100")
    assert (reply.outcome, reply.detail) == (outcome, message)


def test_a_url_without_a_host_is_refused():
    with pytest.raises(ValueError, match="must look like http://"):
        NodeRpc("127.0.0.1:18332")
