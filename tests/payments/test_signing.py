"""Signing a payment: with the wallet's stored public key, the very transaction bsv-sdk's own P2PKH template signs."""

from __future__ import annotations

import logging

import pytest
from bsv import P2PKH, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte

from payments import keys
from payments.models import LedgerTransaction, Utxo, Wallet
from payments.networks import Outcome
from payments.settlement import sign_from_coins
from payments.wallets import open_missing_wallets, open_wallet

PAY = 50_000


@pytest.fixture
def funded(make_household, ledger):
    """A wallet with two confirmed deposits, and its coins in order of preference."""
    wallet = open_wallet(make_household())
    for satoshis in (30_000, 90_000):
        ledger.fund(wallet.address, satoshis)
    ledger.mine()
    wallet.sync_coins(ledger)
    return wallet, list(Utxo.objects.filter(wallet=wallet).order_by("-satoshis"))


def signed_by_bsv_sdk(wallet: Wallet, coins: list[Utxo]) -> str:
    """The payment as bsv-sdk's P2PKH template signs it (the template derives the public key itself)."""
    key = keys.household_key(wallet.derivation_index)
    tx = Transaction()
    for coin in coins:
        parent = Transaction.from_hex(LedgerTransaction.objects.get(txid=coin.txid).raw)
        tx.add_input(
            TransactionInput(
                source_transaction=parent, source_output_index=coin.vout, unlocking_script_template=P2PKH().unlock(key)
            )
        )
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(keys.utility_address()), satoshis=PAY))
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(wallet.address), change=True))
    tx.fee(SatoshisPerKilobyte(100))
    tx.sign()
    return tx.hex()


def test_a_wallet_opened_today_stores_the_public_key_its_address_hashes(make_household):
    wallet = open_wallet(make_household())
    key = keys.household_key(wallet.derivation_index)
    assert wallet.public_key == key.public_key().serialize().hex()
    assert key.address() == wallet.address


def test_the_payment_is_the_one_bsv_sdks_own_template_signs(funded, ledger):
    wallet, coins = funded

    tx, chosen, _ = sign_from_coins(wallet, PAY, coins)

    assert chosen == coins[:1]  # the larger coin pays alone
    assert tx.hex() == signed_by_bsv_sdk(wallet, chosen)
    assert ledger.broadcast(tx.hex()).outcome == Outcome.ACCEPTED


@pytest.mark.parametrize("stored", ["", "02" + "11" * 32], ids=["none stored", "a wrong one stored"])
def test_a_wallet_without_its_right_public_key_still_signs_the_same_payment(funded, stored, caplog):
    wallet, coins = funded
    Wallet.objects.filter(pk=wallet.pk).update(public_key=stored)
    wallet.refresh_from_db()

    with caplog.at_level(logging.ERROR, logger="payments.settlement"):
        tx, chosen, _ = sign_from_coins(wallet, PAY, coins)

    assert tx.hex() == signed_by_bsv_sdk(wallet, chosen)
    assert ("wallet_public_key_mismatch" in caplog.text) == bool(stored)


def test_the_hourly_run_gives_older_wallets_their_public_key_once(make_household):
    wallets = [open_wallet(make_household()) for _ in range(3)]
    Wallet.objects.filter(pk__in=[w.pk for w in wallets[:2]]).update(public_key="")

    open_missing_wallets()

    for wallet in wallets:
        stored = Wallet.objects.get(pk=wallet.pk).public_key
        assert stored == keys.household_key(wallet.derivation_index).public_key().serialize().hex()
