"""Celery tasks: thin wrappers around the jobs (docs/architecture.md, "Conventions"); CELERY_BEAT_SCHEDULE runs them."""

from __future__ import annotations

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from payments import deposits, prices, retention, runs
from payments.broadcast import refresh_pending, sweep_signed
from payments.figures import closed_period_end
from payments.models import CommunityPass, Settlement, Wallet, Withdrawal
from payments.networks import get_network

log = logging.getLogger(__name__)


@shared_task
def settle_closed_hour() -> int:
    """Fan the last closed hour out to workers, a chunk of households per task."""
    period_end = closed_period_end(timezone.now())
    sweep_signed(Settlement, get_network())
    ids = runs.prepare_run(period_end)
    for chunk in runs.chunks(ids):
        settle_chunk.delay(chunk, period_end.isoformat())
    return len(ids)


@shared_task(acks_late=True)
def settle_chunk(household_ids: list[int], period_end: str) -> dict:
    return dict(runs.settle_households(household_ids, datetime.fromisoformat(period_end)))


@shared_task
def refresh_price() -> None:
    try:
        prices.fetch_quote(timezone.now())
    except prices.PriceUnavailable as error:
        # The next tick tries again; settlement defers by itself once the last quote is too old.
        log.warning("price_unavailable detail=%s", error)


@shared_task
def watch_settlements() -> None:
    """Send settlements left signed (a crash, no answer) once their backoff passed; follow sent ones to a block."""
    network = get_network()
    sweep_signed(Settlement, network)
    refresh_pending(Settlement, network)


@shared_task
def watch_community_passes() -> None:
    """Send wallet passes left signed by a crash; follow sent passes to a block (or their failure)."""
    network = get_network()
    sweep_signed(CommunityPass, network)
    refresh_pending(CommunityPass, network)


@shared_task
def watch_withdrawals() -> None:
    """Send withdrawals left signed (a crash, no answer) once their backoff passed; follow sent ones to a block."""
    network = get_network()
    sweep_signed(Withdrawal, network)
    refresh_pending(Withdrawal, network)


@shared_task
def watch_deposits() -> int:
    """Sync the wallets holding a deposit not yet in a block, so its confirmation is noticed (and told)."""
    return deposits.watch_unconfirmed(get_network())


@shared_task
def mine_block() -> None:
    if settings.BSV_NETWORK == "local":
        from payments.networks.local import LocalLedger

        LocalLedger().mine()


@shared_task
def prune_quotes() -> int:
    return retention.prune_quotes(timezone.now(), settings.RETENTION_QUOTES_DAYS, settings.RETENTION_BATCH_SIZE)


@shared_task
def prune_ledger() -> dict:
    if settings.BSV_NETWORK != "local":
        return {}  # the tables are the local ledger's; other networks keep their own history
    return retention.prune_ledger(timezone.now(), settings.RETENTION_LEDGER_DAYS, settings.RETENTION_BATCH_SIZE)


@shared_task
def resync_wallet(address: str) -> None:
    """After a refusal an ARC callback recorded: the wallet's coins as the network holds them (sync_coins)."""
    wallet = Wallet.objects.filter(address=address).first()
    if wallet is not None:
        wallet.resync_quietly(get_network())


@shared_task
def prune_arc_callbacks() -> int:
    return retention.prune_arc_callbacks(
        timezone.now(), settings.RETENTION_ARC_CALLBACK_DAYS, settings.RETENTION_BATCH_SIZE
    )
