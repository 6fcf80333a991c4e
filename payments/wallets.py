"""Opening wallets and keeping their coins in step with the network."""

from __future__ import annotations

import logging

from django.db.models import Sum

from meters.models import Household
from payments import keys
from payments.models import Utxo, Wallet

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


def balance_satoshis(wallet: Wallet) -> int:
    """What the wallet can spend: its available coins (in-flight change included)."""
    total = wallet.utxos.filter(state=Utxo.State.AVAILABLE).aggregate(total=Sum("satoshis"))["total"]
    return total or 0
