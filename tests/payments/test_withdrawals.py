"""Withdrawing a wallet's balance (closing an account, a refund by staff): the address checked for the network,
the amount and fee shown before, sent exactly once, followed like every outgoing payment to a block."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from bsv import PrivateKey
from bsv.constants import Network
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from lib.periods import HOUR
from meters.models import HourlyUsage
from payments import keys, withdrawals
from payments.broadcast import refresh_pending, send_one, sweep_signed
from payments.models import LedgerOutput, LedgerTransaction, PriceQuote, Utxo, Withdrawal
from payments.wallets import balance_satoshis, open_wallet
from payments.withdrawals import WithdrawalRefused
from tests.threads import at_once

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
FUNDS = 100_000

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def funded(household, ledger):
    """``household``'s wallet holding two confirmed coins of FUNDS satoshis."""
    wallet = open_wallet(household)
    ledger.fund(wallet.address, FUNDS)
    ledger.fund(wallet.address, FUNDS)
    ledger.mine()
    wallet.sync_coins(ledger)
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW)
    return wallet


def own_address() -> str:
    return PrivateKey().address(network=keys.address_network())


def received(address: str) -> int:
    return LedgerOutput.objects.filter(address=address).aggregate(s=Sum("satoshis"))["s"] or 0


def untouched(wallet) -> None:
    assert Withdrawal.objects.count() == 0
    assert set(Utxo.objects.filter(wallet=wallet).values_list("state", flat=True)) == {Utxo.State.AVAILABLE}
    assert balance_satoshis(wallet) == 2 * FUNDS


# --- The address -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "withdrawal.address_missing"),
        ("   ", "withdrawal.address_missing"),
        ("not an address", "withdrawal.address_invalid"),
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyU", "withdrawal.address_invalid"),  # a mainnet one, last letter mistyped
        ("x" * 500, "withdrawal.address_invalid"),
        ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "withdrawal.address_invalid"),  # not BSV at all
    ],
)
def test_a_missing_or_garbage_address_is_refused_and_nothing_changes(household, funded, text, code):
    with pytest.raises(WithdrawalRefused) as refused:
        withdrawals.preview(household, text, NOW)
    assert refused.value.code == code and str(refused.value)
    untouched(funded)


def test_an_address_of_the_other_network_is_refused_by_name(household, funded):
    mainnet = PrivateKey().address(network=Network.MAINNET)  # the tests run on the local ledger: testnet addresses
    with pytest.raises(WithdrawalRefused) as refused:
        withdrawals.preview(household, mainnet, NOW)
    assert refused.value.code == "withdrawal.address_wrong_network"
    assert "mainnet address" in str(refused.value) and "local demo ledger" in str(refused.value)
    untouched(funded)


def test_on_mainnet_a_testnet_address_is_the_wrong_one(settings):
    settings.BSV_NETWORK = "mainnet"
    testnet = PrivateKey().address(network=Network.TESTNET)
    with pytest.raises(WithdrawalRefused) as refused:
        withdrawals.check_address(testnet)
    assert refused.value.code == "withdrawal.address_wrong_network"
    mainnet = PrivateKey().address(network=Network.MAINNET)
    assert withdrawals.check_address(f" {mainnet} ") == mainnet


def test_the_wallets_own_address_and_the_utilitys_are_refused(household, funded):
    for address in (funded.address, keys.utility_address()):
        with pytest.raises(WithdrawalRefused):
            withdrawals.preview(household, address, NOW)
    untouched(funded)


# --- Sending -----------------------------------------------------------------------------------------


def test_the_preview_shows_fee_and_amount_and_the_confirmation_sends_exactly_them(household, funded, ledger):
    address = own_address()
    shown = withdrawals.preview(household, address, NOW)
    assert (shown.coins, shown.balance_satoshis) == (2, 2 * FUNDS)
    assert shown.fee_satoshis > 0 and shown.satoshis == 2 * FUNDS - shown.fee_satoshis
    assert shown.eur == (Decimal(shown.satoshis) / 100_000_000 * 30).quantize(Decimal("0.000001"))
    untouched(funded)  # a preview writes nothing

    outcome = withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    withdrawal = outcome.withdrawal
    assert outcome.new and withdrawal.state == "signed"
    assert (withdrawal.satoshis, withdrawal.fee_satoshis, withdrawal.address) == (
        shown.satoshis,
        shown.fee_satoshis,
        address,
    )
    assert balance_satoshis(funded) == 0  # its coins are reserved from the signing on
    assert send_one(Withdrawal, withdrawal.pk, ledger) == "seen"
    assert received(address) == shown.satoshis
    tx = LedgerTransaction.objects.get(txid=withdrawal.txid)
    assert tx.fee == shown.fee_satoshis
    assert set(withdrawal.inputs.values_list("state", flat=True)) == {Utxo.State.SPENT}

    ledger.mine()
    assert refresh_pending(Withdrawal, ledger) == 1
    withdrawal.refresh_from_db()
    assert withdrawal.state == "confirmed" and withdrawal.confirmed_at is not None
    funded.sync_coins(ledger)
    assert balance_satoshis(funded) == 0  # nothing left, and nothing comes back from the network


def test_confirming_the_same_preview_again_sends_nothing_more(household, funded, ledger):
    shown = withdrawals.preview(household, own_address(), NOW)
    first = withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    send_one(Withdrawal, first.withdrawal.pk, ledger)
    again = withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    assert (again.new, again.withdrawal.pk) == (False, first.withdrawal.pk)
    assert Withdrawal.objects.count() == 1
    with pytest.raises(WithdrawalRefused) as refused:  # a new preview finds nothing left
        withdrawals.preview(household, own_address(), NOW)
    assert refused.value.code in ("withdrawal.nothing", "withdrawal.pending")


def test_a_deposit_after_the_preview_makes_the_confirmation_ask_again(household, funded, ledger):
    shown = withdrawals.preview(household, own_address(), NOW)
    ledger.fund(funded.address, 5_000)
    ledger.mine()
    funded.sync_coins(ledger)
    with pytest.raises(WithdrawalRefused) as refused:
        withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    assert refused.value.code == "withdrawal.changed"
    assert Withdrawal.objects.count() == 0


def test_a_forged_or_foreign_confirmation_is_refused(household, other_household, funded):
    shown = withdrawals.preview(household, own_address(), NOW)
    for token, household_ in (("garbage", household), (shown.token + "x", household), (shown.token, other_household)):
        with pytest.raises(WithdrawalRefused) as refused:
            withdrawals.withdraw(household_, token, acting_user=None, source=Withdrawal.Source.STAFF)
        assert refused.value.code == "withdrawal.bad_token"
    untouched(funded)


def test_an_expired_preview_is_refused(household, funded, time_machine):
    shown = withdrawals.preview(household, own_address(), NOW)
    time_machine.move_to(NOW + timedelta(hours=1))
    with pytest.raises(WithdrawalRefused) as refused:
        withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    assert refused.value.code == "withdrawal.expired"


def test_a_household_that_owes_hours_pays_them_first(household, funded):
    HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.STANDING,
        hour_start=(NOW - 2 * HOUR).replace(minute=0),
        kwh=0,
        cost_eur=Decimal("0.25"),
        tax_eur=0,
    )
    with pytest.raises(WithdrawalRefused) as refused:
        withdrawals.preview(household, own_address(), NOW)
    assert refused.value.code == "withdrawal.owed" and "0.25" in str(refused.value)
    untouched(funded)


def test_a_refused_withdrawal_gives_the_coins_back(household, funded, ledger):
    from tests.payments.test_passes import Refusing

    shown = withdrawals.preview(household, own_address(), NOW)
    withdrawal = withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    assert send_one(Withdrawal, withdrawal.withdrawal.pk, Refusing(ledger)) == "rejected"
    assert balance_satoshis(funded) == 2 * FUNDS  # resynced from the network: the coins were never spent
    assert withdrawals.preview(household, own_address(), NOW).satoshis == shown.satoshis


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what is under test; SQLite serializes")
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_confirmations_send_once(household, ledger):
    wallet = open_wallet(household)
    for _ in range(3):
        ledger.fund(wallet.address, FUNDS)
    ledger.mine()
    wallet.sync_coins(ledger)
    address = own_address()
    same = withdrawals.preview(household, address, timezone.now()).token
    other = withdrawals.preview(household, address, timezone.now()).token  # a second tab, a second staff member

    def confirm(token: str):
        def call():
            try:
                outcome = withdrawals.withdraw(household, token, acting_user=None, source=Withdrawal.Source.STAFF)
            except WithdrawalRefused as refusal:
                return refusal.code
            if outcome.new:
                send_one(Withdrawal, outcome.withdrawal.pk, ledger)
            return outcome.new

        return call

    results, errors = at_once(confirm(same), confirm(same), confirm(other), confirm(same))
    assert errors == []
    assert results.count(True) == 1, results
    assert Withdrawal.objects.count() == 1
    withdrawal = Withdrawal.objects.get()
    assert received(address) == withdrawal.satoshis == 3 * FUNDS - withdrawal.fee_satoshis
    assert LedgerTransaction.objects.filter(txid=withdrawal.txid).count() == 1
    assert balance_satoshis(wallet) == 0


def test_the_sweeper_sends_a_withdrawal_left_signed(household, funded, ledger, time_machine):
    shown = withdrawals.preview(household, own_address(), NOW)
    withdrawal = withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF)
    time_machine.move_to(NOW + HOUR)
    assert sweep_signed(Withdrawal, ledger) == 1
    assert sweep_signed(Withdrawal, ledger) == 0
    withdrawal.withdrawal.refresh_from_db()
    assert withdrawal.withdrawal.state == "seen"


def test_beat_watches_withdrawals_every_minute(household, funded, ledger, time_machine, settings):
    from payments.tasks import watch_withdrawals

    assert settings.CELERY_BEAT_SCHEDULE["watch-withdrawals"]["task"] == "payments.tasks.watch_withdrawals"
    shown = withdrawals.preview(household, own_address(), NOW)
    made = withdrawals.withdraw(household, shown.token, acting_user=None, source=Withdrawal.Source.STAFF).withdrawal
    time_machine.move_to(NOW + HOUR)
    watch_withdrawals()  # sends it
    ledger.mine()
    watch_withdrawals()  # and follows it to its block
    made.refresh_from_db()
    assert made.state == "confirmed"
