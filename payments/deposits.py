"""Noticing deposits: the wallet's coins synced from the network while somebody waits for one.

Nothing tells us when somebody pays a household's address: we ask the network
(``Wallet.sync_coins``, which also emits ``deposit.received`` / ``deposit.confirmed``). We ask

- while the top-up page waits for a deposit (its htmx poll calls ``check``), at most once per
  ``CHECK_SECONDS`` per wallet whatever the number of open tabs, so a page left open costs the
  network one call every few seconds, not one per poll;
- every few minutes for wallets holding a deposit not yet in a block (``watch_unconfirmed``), so a
  confirmation is noticed after the page is closed;
- and, as before, in the hourly run for a household in arrears (payments/runs.py).
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db.models import Exists, OuterRef
from django.utils import timezone

from payments.models import CommunityPass, Settlement, Utxo, Wallet, Withdrawal
from payments.networks import BsvNetwork, NetworkUnavailable

log = logging.getLogger(__name__)

CHECK_SECONDS = 10
WATCH_LIMIT = 500  # wallets per run of watch_unconfirmed; the rest wait for the next run


def check(wallet: Wallet, network: BsvNetwork) -> bool:
    """Sync the wallet's coins unless that was done in the last CHECK_SECONDS; False when the network did not answer."""
    try:
        if not _due(f"deposits:check:{wallet.pk}", timezone.now().timestamp()):
            return True
    except Exception:  # a cache that is down must not stop a household seeing its deposit
        log.warning("deposit_check_cache_failed wallet=%s", wallet.pk, exc_info=True)
    try:
        wallet.sync_coins(network)
    except NetworkUnavailable as error:
        log.warning("deposit_check_deferred wallet=%s detail=%s", wallet.pk, error)
        return False
    return True


def _due(key: str, now: float) -> bool:
    """Whether the wallet was last checked CHECK_SECONDS ago or more; if so, mark it checked now.

    The time of the last check is the key's value, compared with our clock: the cache's own expiry
    only forgets the key (a cache's clock and ours need not agree, nor a test's travelling one).
    """
    if cache.add(key, now, CHECK_SECONDS):
        return True
    last = cache.get(key)
    if last is not None and now - last < CHECK_SECONDS:
        return False
    cache.set(key, now, CHECK_SECONDS)
    return True


def unconfirmed_deposit_coins():
    """Available coins not in a block that none of their household's own payments made (its change is not a deposit)."""
    household = OuterRef("wallet__household_id")
    txid = OuterRef("txid")
    return Utxo.objects.filter(confirmed=False, state=Utxo.State.AVAILABLE).exclude(
        Exists(Settlement.objects.filter(household_id=household, txid=txid))
        | Exists(CommunityPass.objects.filter(household_id=household, txid=txid))
        | Exists(Withdrawal.objects.filter(household_id=household, txid=txid))
    )


def watch_unconfirmed(network: BsvNetwork, limit: int = WATCH_LIMIT) -> int:
    """Sync the wallets holding a deposit not yet in a block; returns how many coins became new or confirmed.

    Steps: 1. the wallets with such a coin (one query, at most ``limit``); 2. each synced on its own
    (its own transaction, in sync_coins); a network that does not answer stops the run, the next
    one asks again.
    """
    wallet_ids = list(unconfirmed_deposit_coins().values_list("wallet_id", flat=True).distinct().order_by()[:limit])
    changed = 0
    for wallet in Wallet.objects.filter(pk__in=wallet_ids).order_by("pk"):
        try:
            changed += wallet.sync_coins(network)
        except NetworkUnavailable as error:
            log.warning("deposit_watch_deferred wallet=%s detail=%s", wallet.pk, error)
            break
    return changed
