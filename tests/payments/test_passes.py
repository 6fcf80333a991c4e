"""Buying a community pass from the wallet: paid once, on the ledger, and undone when the network refuses it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from meters.models import HourlyUsage
from payments import keys, passes
from payments.broadcast import refresh_pending, send_one, sweep_signed
from payments.models import CommunityPass, LedgerOutput, LedgerTransaction, PriceQuote, Settlement, Utxo
from payments.networks import NetworkUnavailable, Outcome, Reply
from payments.settlement import settle_household
from payments.wallets import balance_satoshis, open_wallet
from tests.threads import at_once

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
FUNDS = 100_000


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def funded(household, ledger):
    """``household``'s wallet holding one confirmed coin of FUNDS satoshis."""
    wallet = open_wallet(household)
    ledger.fund(wallet.address, FUNDS)
    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)
    return wallet


def utility_payments() -> list[LedgerOutput]:
    return list(LedgerOutput.objects.filter(address=keys.utility_address()).select_related("transaction"))


class Refusing:
    """A network that refuses every broadcast but otherwise is the local ledger."""

    def __init__(self, ledger, outcome=Outcome.REJECTED, detail="mandatory-script-verify-flag-failed"):
        self.ledger, self.reply = ledger, Reply(outcome, detail)
        self.name = "local"

    def broadcast(self, raw_hex):
        return self.reply

    def status(self, txid):
        return self.ledger.status(txid)

    def coins(self, address):
        return self.ledger.coins(address)


class Down(Refusing):
    def broadcast(self, raw_hex):
        raise NetworkUnavailable("connection refused")


def test_buying_a_pass_pays_the_price_to_the_utility_exactly_once_on_the_ledger(household, funded, ledger):
    purchase = passes.buy_pass(household, timezone.now())
    assert purchase.new
    community_pass = purchase.community_pass
    assert send_one(CommunityPass, community_pass.pk, ledger) == CommunityPass.State.SEEN

    [payment] = utility_payments()
    assert payment.satoshis == settings.COMMUNITY_PRICE_SATS
    assert payment.transaction.txid == community_pass.txid
    community_pass.refresh_from_db()
    assert community_pass.source == CommunityPass.Source.WALLET
    assert community_pass.valid_until == NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS)
    assert community_pass.fee_satoshis >= 23
    # The deposit is spent, the change came back, and the balance is what the ledger says.
    spent = Utxo.objects.get(wallet=funded, txid=LedgerTransaction.objects.get(is_faucet=True).txid)
    assert (spent.state, spent.reserved_by_pass) == (Utxo.State.SPENT, community_pass)
    change = Utxo.objects.get(wallet=funded, txid=community_pass.txid)
    assert change.state == Utxo.State.AVAILABLE
    assert change.satoshis == FUNDS - settings.COMMUNITY_PRICE_SATS - community_pass.fee_satoshis
    assert balance_satoshis(funded) == sum(c.satoshis for c in ledger.coins(funded.address)) == change.satoshis


def test_buying_again_while_a_pass_is_live_returns_it_and_pays_nothing(household, funded, ledger):
    first = passes.buy_pass(household, timezone.now())
    send_one(CommunityPass, first.community_pass.pk, ledger)
    second = passes.buy_pass(household, timezone.now())
    assert not second.new
    assert second.community_pass == first.community_pass
    assert CommunityPass.objects.count() == 1
    assert len(utility_payments()) == 1


def test_a_signed_pass_not_yet_sent_still_counts_as_bought(household, funded):
    # A double click between commit and broadcast must not pay a second time either.
    first = passes.buy_pass(household, timezone.now())
    second = passes.buy_pass(household, timezone.now())
    assert (first.new, second.new) == (True, False)
    assert CommunityPass.objects.count() == 1


def test_a_wallet_that_cannot_pay_changes_nothing(household, ledger):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, settings.COMMUNITY_PRICE_SATS)  # the price, but not the fee
    ledger.mine()
    wallet.sync_coins(ledger)
    with pytest.raises(passes.CannotPay, match="Nothing was charged"):
        passes.buy_pass(household, timezone.now())
    assert not CommunityPass.objects.exists()
    assert list(Utxo.objects.values_list("state", flat=True)) == [Utxo.State.AVAILABLE]
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 0


def test_an_unconfirmed_deposit_is_not_spent(household, ledger):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, FUNDS)
    wallet.sync_coins(ledger)  # not mined: settlement's rule, never spend an unconfirmed deposit
    with pytest.raises(passes.CannotPay):
        passes.buy_pass(household, timezone.now())
    assert not CommunityPass.objects.exists()


def test_a_rejected_payment_releases_the_coins_and_opens_nothing(household, funded, ledger):
    purchase = passes.buy_pass(household, timezone.now())
    state = send_one(CommunityPass, purchase.community_pass.pk, Refusing(ledger))
    assert state == CommunityPass.State.REJECTED
    community_pass = CommunityPass.objects.get()
    assert community_pass.state == CommunityPass.State.REJECTED
    assert "script" in community_pass.detail
    assert passes.live_pass(household, timezone.now()) is None
    assert not community_pass.grants_access(timezone.now())
    # The coin is spendable again (resynced from the ledger), the change never existed.
    [coin] = Utxo.objects.filter(wallet=funded)
    assert (coin.state, coin.satoshis, coin.confirmed, coin.reserved_by_pass) == (
        Utxo.State.AVAILABLE,
        FUNDS,
        True,
        None,
    )
    assert balance_satoshis(funded) == FUNDS
    assert utility_payments() == []


def test_a_refused_copy_of_a_payment_the_network_holds_leaves_the_pass_accepted(household, funded, ledger):
    """Two copies of one payment sent at once (two retries): the network takes one and may say the other
    spends coins "spent by" the payment itself. Found on PostgreSQL by the concurrent x402 redemptions."""
    community_pass = passes.buy_pass(household, timezone.now()).community_pass
    assert send_one(CommunityPass, community_pass.pk, ledger) == CommunityPass.State.SEEN
    refused = Reply(Outcome.DOUBLE_SPEND, f"txn-mempool-conflict: input 0 is spent by {community_pass.txid}")
    assert CommunityPass.objects.get(pk=community_pass.pk).record_reply(refused, ledger) == CommunityPass.State.SEEN
    community_pass.refresh_from_db()
    assert community_pass.state == CommunityPass.State.SEEN
    assert passes.live_pass(household, timezone.now()) == community_pass
    assert Utxo.objects.filter(txid=community_pass.txid).exists()  # its change is still the wallet's


def test_a_double_spent_payment_opens_nothing(household, funded, ledger):
    purchase = passes.buy_pass(household, timezone.now())
    send_one(CommunityPass, purchase.community_pass.pk, Refusing(ledger, Outcome.DOUBLE_SPEND, "txn-mempool-conflict"))
    assert CommunityPass.objects.get().state == CommunityPass.State.DOUBLE_SPEND
    assert passes.live_pass(household, timezone.now()) is None


def test_after_a_refusal_the_same_coins_are_not_signed_into_the_same_refused_transaction(household, funded, ledger):
    purchase = passes.buy_pass(household, timezone.now())
    send_one(CommunityPass, purchase.community_pass.pk, Refusing(ledger))
    with pytest.raises(passes.CannotPay, match="refused"):
        passes.buy_pass(household, timezone.now())
    assert CommunityPass.objects.count() == 1


def test_a_network_outage_leaves_the_pass_signed_and_the_sweeper_sends_it(household, funded, ledger):
    purchase = passes.buy_pass(household, timezone.now())
    assert send_one(CommunityPass, purchase.community_pass.pk, Down(ledger)) == CommunityPass.State.SIGNED
    assert passes.live_pass(household, timezone.now()) == purchase.community_pass  # the money is committed
    assert utility_payments() == []

    assert sweep_signed(CommunityPass, ledger) == 0  # too fresh: the request itself may still be sending it
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        assert sweep_signed(CommunityPass, ledger) == 1
    assert CommunityPass.objects.get().state == CommunityPass.State.SEEN
    assert len(utility_payments()) == 1


def test_a_pass_the_network_keeps_refusing_to_take_is_retried_with_backoff(household, funded, ledger):
    purchase = passes.buy_pass(household, timezone.now())
    pass_id = purchase.community_pass.pk
    assert send_one(CommunityPass, pass_id, Down(ledger)) == CommunityPass.State.SIGNED  # try 1, at NOW

    def sweep_at(minutes: float, network) -> int:
        with time_machine.travel(NOW + timedelta(minutes=minutes), tick=False):
            return sweep_signed(CommunityPass, network)

    assert sweep_at(1.9, Down(ledger)) == 0  # after one try the next waits 2 minutes
    assert sweep_at(2.5, Down(ledger)) == 1  # try 2, at +2.5: the next waits 4 minutes
    assert sweep_at(6.4, ledger) == 0
    assert CommunityPass.objects.get(pk=pass_id).broadcast_attempts == 2
    assert sweep_at(6.5, ledger) == 1
    community_pass = CommunityPass.objects.get(pk=pass_id)
    assert (community_pass.state, community_pass.broadcast_attempts) == (CommunityPass.State.SEEN, 3)
    assert len(utility_payments()) == 1


def test_the_beat_task_sends_signed_passes_and_confirms_mined_ones(household, funded, ledger):
    from payments.tasks import watch_community_passes

    purchase = passes.buy_pass(household, timezone.now())  # a crash before the broadcast
    with time_machine.travel(NOW + timedelta(minutes=5), tick=False):
        watch_community_passes()
    community_pass = CommunityPass.objects.get(pk=purchase.community_pass.pk)
    assert community_pass.state == CommunityPass.State.SEEN
    assert not Utxo.objects.get(txid=community_pass.txid).confirmed

    ledger.mine()
    watch_community_passes()
    community_pass.refresh_from_db()
    assert community_pass.state == CommunityPass.State.CONFIRMED
    assert Utxo.objects.get(txid=community_pass.txid).confirmed  # its change is spendable for settlements now
    assert "task" in settings.CELERY_BEAT_SCHEDULE["watch-community-passes"]


def test_an_expired_pass_locks_the_page_again_and_a_new_one_can_be_bought(household, funded, ledger):
    first = passes.buy_pass(household, timezone.now()).community_pass
    send_one(CommunityPass, first.pk, ledger)
    ledger.mine()
    refresh_pending(CommunityPass, ledger)
    later = NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS, seconds=1)
    with time_machine.travel(later, tick=False):
        assert passes.live_pass(household, timezone.now()) is None
        second = passes.buy_pass(household, timezone.now())
        assert second.new
        send_one(CommunityPass, second.community_pass.pk, ledger)
    assert len(utility_payments()) == 2


# --- Passes and settlements never take each other's coins -------------------------------------------


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(minutes=1))


@pytest.fixture
def owe(make_meter):
    def owe(household, eur: str) -> None:
        meter, _ = make_meter(household)
        HourlyUsage.objects.create(
            household=household,
            meter=meter,
            hour_start=datetime(2026, 11, 22, 10, tzinfo=UTC),
            kwh=Decimal("1"),
            rate=Decimal("0.25"),
            cost_eur=Decimal(eur),
        )

    return owe


def test_a_settlement_never_spends_a_coin_a_pass_reserved(household, funded, ledger, quote, owe):
    passes.buy_pass(household, timezone.now())  # reserves the only confirmed coin; its change is unconfirmed
    owe(household, "0.01")  # 33,333 sat: the wallet could pay it from the coin
    result = settle_household(household.pk, datetime(2026, 11, 22, 12, tzinfo=UTC), timezone.now())
    # The pass's change is not the change of an accepted settlement: it waits for a block.
    assert result.status == "arrears"
    assert not Settlement.objects.exists()


def test_a_pass_never_spends_a_coin_a_settlement_reserved(household, funded, ledger, quote, owe):
    owe(household, "0.01")  # 33,333 sat: the wallet could pay it from the coin
    result = settle_household(household.pk, datetime(2026, 11, 22, 12, tzinfo=UTC), timezone.now())
    assert result.status == "signed"  # its coin is reserved, its change is not yet accepted
    with pytest.raises(passes.CannotPay):
        passes.buy_pass(household, timezone.now())
    assert Utxo.objects.filter(reserved_by_pass__isnull=False).count() == 0


# --- Two clicks at the same moment, on PostgreSQL ----------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what is under test; SQLite serializes")
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_unlocks_pay_once(household, ledger):
    wallet = open_wallet(household)
    for _ in range(3):  # several coins: a second payment would have something to spend
        ledger.fund(wallet.address, FUNDS)
    ledger.mine()
    wallet.sync_coins(ledger)

    def click() -> passes.Purchase:
        purchase = passes.buy_pass(household, timezone.now())
        if purchase.new:
            send_one(CommunityPass, purchase.community_pass.pk, ledger)
        return purchase

    purchases, errors = at_once(*[click] * 4)
    assert errors == []
    assert sorted(p.new for p in purchases) == [False, False, False, True]
    assert CommunityPass.objects.count() == 1
    total = LedgerOutput.objects.filter(address=keys.utility_address()).aggregate(total=Sum("satoshis"))["total"]
    assert total == settings.COMMUNITY_PRICE_SATS


# --- Staff see passes in the admin, read-only --------------------------------------------------------


def test_staff_list_passes_filtered_by_source_and_state_and_cannot_change_them(staff_client, household, funded, ledger):
    community_pass = passes.buy_pass(household, timezone.now()).community_pass
    send_one(CommunityPass, community_pass.pk, ledger)
    url = "/admin/payments/communitypass/"
    listing = staff_client.get(url, {"source__exact": "wallet", "state__exact": "seen"})
    assert listing.status_code == 200
    assert community_pass.txid[:12] in listing.content.decode()
    assert community_pass.txid[:12] not in staff_client.get(url, {"source__exact": "x402"}).content.decode()
    assert staff_client.get(f"{url}add/").status_code == 403
    detail = staff_client.get(f"{url}{community_pass.pk}/change/")
    assert detail.status_code == 200 and community_pass.raw_tx in detail.content.decode()
    assert staff_client.post(f"{url}{community_pass.pk}/delete/", {"post": "yes"}).status_code == 403
    assert CommunityPass.objects.filter(pk=community_pass.pk).exists()
