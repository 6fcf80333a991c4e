"""Opening wallets and keeping their coins in step with the network."""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Q, Sum

from meters.models import Household
from payments import keys
from payments.models import Utxo, Wallet
from payments.networks import BsvNetwork, NetworkUnavailable

log = logging.getLogger(__name__)


def open_wallet(household: Household) -> Wallet:
    """The household's wallet, created on first call. The key index is the household's id: stable, unique."""
    wallet, _ = Wallet.objects.get_or_create(
        household=household,
        defaults={"derivation_index": household.pk, "address": keys.household_address(household.pk)},
    )
    return wallet


def open_missing_wallets() -> int:
    """Give every household without a wallet its wallet (the hourly run calls this first)."""
    households = list(Household.objects.filter(wallet__isnull=True).only("pk"))
    Wallet.objects.bulk_create(
        [Wallet(household=h, derivation_index=h.pk, address=keys.household_address(h.pk)) for h in households],
        ignore_conflicts=True,
    )
    return len(households)


def sync_coins(wallet: Wallet, network: BsvNetwork) -> int:
    """Add coins the network holds for the wallet that we do not know yet, and note confirmations.

    Returns how many coins became new or newly confirmed: a reason to try an arrears payment again.
    Our database stays the truth for our own spends (a coin we reserved or spent is never made
    available again here), since explorers lag behind what we just broadcast.
    """
    coins = network.coins(wallet.address)
    with transaction.atomic():
        known = {
            (txid, vout): confirmed
            for txid, vout, confirmed in Utxo.objects.filter(
                wallet=wallet, txid__in={c.txid for c in coins}
            ).values_list("txid", "vout", "confirmed")
        }
        new = [
            Utxo(
                wallet=wallet,
                txid=c.txid,
                vout=c.vout,
                satoshis=c.satoshis,
                raw_parent=c.raw_parent,
                confirmed=c.confirmations > 0,
            )
            for c in coins
            if (c.txid, c.vout) not in known
        ]
        Utxo.objects.bulk_create(new, ignore_conflicts=True)
        confirmed = [c for c in coins if c.confirmations > 0 and known.get((c.txid, c.vout)) is False]
        if confirmed:
            outpoints = Q()
            for coin in confirmed:
                outpoints |= Q(txid=coin.txid, vout=coin.vout)
            Utxo.objects.filter(outpoints, wallet=wallet).update(confirmed=True)
    if new or confirmed:
        log.info("wallet_synced wallet=%s new_coins=%d newly_confirmed=%d", wallet.pk, len(new), len(confirmed))
    return len(new) + len(confirmed)


def resync_quietly(wallet: Wallet, network: BsvNetwork) -> None:
    """sync_coins after a refused payment; a network that does not answer now only delays it."""
    try:
        sync_coins(wallet, network)
    except NetworkUnavailable as error:
        # The coins come back with the next sync (before the next arrears retry); nothing is lost.
        log.warning("coin_sync_deferred wallet=%s detail=%s", wallet.pk, error)


def balance_satoshis(wallet: Wallet) -> int:
    """What the wallet can spend: its available coins (in-flight change included)."""
    total = wallet.utxos.filter(state=Utxo.State.AVAILABLE).aggregate(total=Sum("satoshis"))["total"]
    return total or 0
