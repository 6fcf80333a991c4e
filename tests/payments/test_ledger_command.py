"""`manage.py ledger fund ADDRESS SATS` and `manage.py ledger mine`, on the local network only."""

from __future__ import annotations

from io import StringIO

import pytest
from bsv import PrivateKey
from bsv.constants import Network
from django.core.management import CommandError, call_command
from django.test import override_settings

from payments import keys
from payments.models import LedgerBlock, LedgerTransaction
from payments.networks import Outcome


def ledger_command(*args: str) -> str:
    out = StringIO()
    call_command("ledger", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def address() -> str:
    return keys.household_address(0)


def test_fund_prints_the_txid_of_a_coin_for_the_address(ledger, address):
    txid = ledger_command("fund", address, "250000").strip()

    (coin,) = ledger.coins(address)
    assert (coin.txid, coin.satoshis) == (txid, 250_000)
    assert LedgerTransaction.objects.get(txid=txid).is_faucet


def test_mine_prints_the_height_and_how_many_transactions_it_confirmed(ledger, address):
    first = ledger.fund(address, 1_000)
    ledger.fund(address, 2_000)

    assert ledger_command("mine").strip() == "Mined block 1 with 2 transactions."
    assert ledger_command("mine").strip() == "Mined block 2 with 0 transactions."
    reply = ledger.status(first)
    assert (reply.outcome, reply.confirmations) == (Outcome.CONFIRMED, 2)


@pytest.mark.parametrize(
    "address",
    [
        pytest.param("not-an-address", id="garbage"),
        pytest.param(PrivateKey(network=Network.MAINNET).address(), id="mainnet-address"),
    ],
)
def test_fund_refuses_a_bad_address_and_changes_nothing(ledger, address):
    with pytest.raises(CommandError, match="not a testnet address"):
        ledger_command("fund", address, "1000")
    assert not LedgerTransaction.objects.exists()


@pytest.mark.parametrize("satoshis", ["0", "-5", "lots", "1.5"])
def test_fund_refuses_amounts_that_are_not_positive_whole_satoshis(ledger, address, satoshis):
    with pytest.raises(CommandError):
        ledger_command("fund", address, satoshis)
    assert not LedgerTransaction.objects.exists()


def test_an_action_is_required(ledger):
    with pytest.raises(CommandError):
        ledger_command()


@override_settings(BSV_NETWORK="testnet")
@pytest.mark.parametrize("args", [("mine",), ("fund", "mqsFFvzkPKnG7hXe1QzkS5rk2v6KMQyaGq", "1000")])
def test_the_ledger_is_refused_on_a_real_network(ledger, args):
    with pytest.raises(CommandError, match="only on the local ledger; BSV_NETWORK is 'testnet'"):
        ledger_command(*args)
    assert not LedgerTransaction.objects.exists()
    assert not LedgerBlock.objects.exists()
