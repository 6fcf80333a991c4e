"""Every transaction the settlement produces is accepted by the real regtest node.

The same settlement code as on the local ledger (test_settlement.py), with NodeRpc as its network:
wallets funded and synced from the node, payments signed, sent, mined and confirmed there. Runs
when BSV_REGTEST_RPC_URL is set (CI starts a node), skipped otherwise.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from bsv import Transaction
from bsv.constants import Network
from bsv.hd.bip32 import master_xprv_from_seed
from django.utils import timezone

from lib.periods import floor_hour
from meters.ingest import ingest_readings
from meters.models import HourlyUsage
from meters.schema import ReadingIn
from payments import keys
from payments.broadcast import refresh_pending, send_one, sweep_signed
from payments.models import PriceQuote, Settlement, SettlementLine
from payments.networks import Outcome
from payments.networks.node import NodeRpc
from payments.settlement import settle_household
from payments.wallets import balance_satoshis, open_wallet
from tests.payments.test_node_network import closed_port, new_address, regtest_node, spend

FUNDS = 10_000_000  # 0.1 BSV = EUR 3 at the price below
PRICE = Decimal("30")  # EUR per BSV


@pytest.fixture
def node() -> Iterator[NodeRpc]:
    with regtest_node() as node:
        yield node


def _forget_keys() -> None:
    keys._master.cache_clear()
    keys._household_chain.cache_clear()
    keys._household_chain_public.cache_clear()
    keys.utility_address.cache_clear()


@pytest.fixture(autouse=True)
def _own_master_key(settings):
    # Household addresses derive from the master key and the household's id. Test databases
    # (one per xdist worker, one per run) reuse ids while the node lives on, so with a shared key
    # two tests would share an address and see each other's coins. keys caches what it derives.
    settings.WALLET_MASTER_KEY = str(master_xprv_from_seed(secrets.token_bytes(64), Network.TESTNET))
    _forget_keys()
    yield
    _forget_keys()


@pytest.fixture
def start():
    """The first of the hours the household used, six hours ago, so every reading is in the past."""
    return floor_hour(timezone.now()) - timedelta(hours=6)


@pytest.fixture
def home(make_meter, node, start):
    """A household whose wallet holds one confirmed coin from the node, with 1 kWh used in each of 5 hours."""
    meter, _ = make_meter()
    wallet = open_wallet(meter.household)
    node.watch(keys.utility_address())  # before it is paid, so its coins can be listed without a rescan
    node.fund(wallet.address, FUNDS)
    node.mine()
    assert wallet.sync_coins(node) == 1
    items = [
        (hour, ReadingIn(timestamp=start + timedelta(hours=hour), energy_kwh=Decimal(100 + hour))) for hour in range(6)
    ]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []
    PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=timezone.now())
    return meter.household, wallet


def settle(household, period_end) -> Settlement:
    result = settle_household(household.pk, period_end, timezone.now())
    assert result.status == "signed", result
    return Settlement.objects.get(pk=result.settlement_id)


def test_hour_after_hour_each_payment_is_accepted_mined_and_confirmed(home, node, start):
    household, wallet = home
    settlements = []
    for hour in range(1, 6):
        settlement = settle(household, start + timedelta(hours=hour))
        assert send_one(Settlement, settlement.pk, node) == Settlement.State.SEEN
        assert node.status(settlement.txid).outcome == Outcome.ACCEPTED
        settlements.append(settlement)
    # Hours settled before a block chain up: each payment spends the previous one's change.
    for before, after in itertools.pairwise(settlements):
        assert [i.source_txid for i in Transaction.from_hex(after.raw_tx).inputs] == [before.txid]

    node.mine()
    assert refresh_pending(Settlement, node) == 5
    for settlement in settlements:
        settlement.refresh_from_db()
        assert settlement.state == Settlement.State.CONFIRMED
        assert settlement.confirmed_at is not None
    assert not HourlyUsage.objects.filter(household=household, settled_at__isnull=True).exists()
    assert sum(s.eur for s in settlements) == Decimal("1.25")  # 5 kWh at EUR 0.25

    # What the node holds is what our books say: the utility got every settled satoshi, once,
    # and the wallet balance we show is the wallet's coins on the node.
    paid = sorted((c.txid, c.satoshis, c.confirmations > 0) for c in node.coins(keys.utility_address()))
    assert paid == sorted((s.txid, s.satoshis, True) for s in settlements)
    on_node = node.coins(wallet.address)
    assert balance_satoshis(wallet) == sum(c.satoshis for c in on_node)
    assert balance_satoshis(wallet) == FUNDS - sum(s.satoshis + s.fee_satoshis for s in settlements)
    assert wallet.utxos.get(state="available").confirmed


@pytest.mark.parametrize("conflict_mined", [False, True], ids=["conflict-in-mempool", "conflict-in-block"])
def test_a_double_spend_releases_the_hours_and_the_next_run_pays_them(home, node, start, conflict_mined):
    household, wallet = home
    [coin] = wallet.utxos.all()
    # The wallet's key spends its coin elsewhere first (a restored backup, a second signer...),
    # sending the rest back to the wallet; our database still thinks the coin is available.
    conflict = spend(
        Transaction.from_hex(coin.raw_parent),
        coin.vout,
        keys.household_key(wallet.derivation_index),
        [(new_address(), 1_000_000)],
        change_to=wallet.address,
    )
    assert node.broadcast(conflict.hex()).outcome == Outcome.ACCEPTED
    if conflict_mined:
        node.mine()

    settlement = settle(household, start + timedelta(hours=2))
    assert send_one(Settlement, settlement.pk, node) == Settlement.State.DOUBLE_SPEND
    settlement.refresh_from_db()
    expected = "spent in a block" if conflict_mined else "txn-mempool-conflict"
    assert expected in settlement.detail
    assert not HourlyUsage.objects.filter(household=household, settled_at__isnull=False).exists()
    assert not SettlementLine.objects.filter(settlement=settlement, released=False).exists()
    # The wallet was resynced from the node: its only coin now is the conflict's change.
    assert list(wallet.utxos.values_list("txid", "state")) == [(conflict.txid(), "available")]
    if not conflict_mined:
        # The conflict's change is an unconfirmed deposit as far as we know: spent once in a block.
        node.mine()
        assert wallet.sync_coins(node) == 1

    retry = settle(household, start + timedelta(hours=2))
    assert (retry.eur, retry.satoshis) == (settlement.eur, settlement.satoshis)
    assert send_one(Settlement, retry.pk, node) == Settlement.State.SEEN
    node.mine()
    assert refresh_pending(Settlement, node) == 1
    retry.refresh_from_db()
    assert retry.state == Settlement.State.CONFIRMED
    assert balance_satoshis(wallet) == sum(c.satoshis for c in node.coins(wallet.address))


def test_a_payment_signed_while_the_node_is_down_is_sent_by_the_sweeper(home, node, start):
    household, _ = home
    settlement = settle(household, start + timedelta(hours=3))
    down = NodeRpc(f"http://energypay:pw@127.0.0.1:{closed_port()}")
    assert send_one(Settlement, settlement.pk, down) == Settlement.State.SIGNED
    assert node.status(settlement.txid).outcome == Outcome.UNKNOWN

    assert sweep_signed(Settlement, node, older_than=timedelta(0)) == 1
    settlement.refresh_from_db()
    assert settlement.state == Settlement.State.SEEN
    node.mine()
    assert refresh_pending(Settlement, node) == 1
    settlement.refresh_from_db()
    assert settlement.state == Settlement.State.CONFIRMED
