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
    wallet = Wallet.objects.filter(household=household).first()
    if wallet is not None:
        return wallet
    address, public_key = keys.household_public(household.pk)
    wallet, _ = Wallet.objects.get_or_create(
        household=household,
        defaults={"derivation_index": household.pk, "address": address, "public_key": public_key},
    )
    return wallet


def open_missing_wallets() -> int:
    """Give every household without a wallet its wallet, and every wallet its public key (the hourly run's first step).

    Wallets opened before public keys were stored get theirs here, once; until then they sign as
    before, deriving it from the private key (payments.settlement).
    """
    households = list(Household.objects.filter(wallet__isnull=True).only("pk"))
    Wallet.objects.bulk_create(
        [Wallet(household=h, derivation_index=h.pk, **_identity(h.pk)) for h in households],
        ignore_conflicts=True,
    )
    keyless = list(Wallet.objects.filter(public_key="").only("pk", "derivation_index"))
    for wallet in keyless:
        wallet.public_key = keys.household_public(wallet.derivation_index)[1]
    Wallet.objects.bulk_update(keyless, ["public_key"], batch_size=1_000)
    return len(households)


def _identity(index: int) -> dict[str, str]:
    address, public_key = keys.household_public(index)
    return {"address": address, "public_key": public_key}


def balance_satoshis(wallet: Wallet) -> int:
    """What the wallet can spend: its available coins (in-flight change included)."""
    total = wallet.utxos.filter(state=Utxo.State.AVAILABLE).aggregate(total=Sum("satoshis"))["total"]
    return total or 0
