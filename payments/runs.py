"""The hourly run (beat's settle_closed_hour): which households to settle, in chunks any number of workers share.

Each chunk is signed and recorded by payments/settlement.py, then sent by payments/broadcast.py.
"""

from __future__ import annotations

import contextlib
import gc
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from meters.hooks import load_hook
from meters.models import HourlyUsage
from payments.broadcast import send_many, send_one
from payments.figures import owed
from payments.models import Settlement, Wallet
from payments.networks import BsvNetwork, NetworkUnavailable, get_network
from payments.settlement import settle_household, settle_many
from payments.wallets import open_missing_wallets

log = logging.getLogger(__name__)

# Households per chunk (one settle_chunk task, one signing transaction). Measured on 2 cores: 500
# costs less per household than 200 (a chunk's twenty statements and three commits are shared by
# more), and 1,000 no less than 500; a chunk of 500 holds its wallets' locks for a fraction of a second.
CHUNK = 500


def households_owing(period_end: datetime) -> list[int]:
    """Households with open, priced usage before ``period_end`` (the partial index on open lines serves this)."""
    owing = HourlyUsage.objects.filter(owed(before=period_end))
    return list(owing.order_by("household_id").values_list("household_id", flat=True).distinct())


def chunks(ids: list[int], size: int = CHUNK) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def settle_households(household_ids: list[int], period_end: datetime, now: datetime | None = None) -> Counter:
    """Settle the households chunk by chunk, then broadcast what was signed. Returns how many ended how.

    Per chunk of CHUNK households:
    1. sign set-based, in one transaction (payments.settlement.settle_many); if that raises a
       DatabaseError (another run claimed part of the chunk, so all of it rolled back), every
       household of the chunk goes through settle_household instead, one by one;
    2. broadcast what was signed and record the replies in bulk (payments.broadcast.send_many);
    3. a household in arrears gets one more try after asking the network for deposits.
    One household's failure is logged and counted; the rest of the chunk still settles.
    """
    network = get_network()
    tally: Counter = Counter()
    for chunk in chunks(list(dict.fromkeys(household_ids))):
        tally.update(_settle_chunk(chunk, period_end, now, network))
        _settled(chunk)
    return tally


def _settled(household_ids: list[int]) -> None:
    """Tell settings.SETTLEMENT_DONE_HOOK (alarms, which payments must not import) that a chunk settled.

    The hook only schedules work; whatever it raises is logged and the run goes on.
    """
    if path := getattr(settings, "SETTLEMENT_DONE_HOOK", ""):
        try:
            load_hook(path)(household_ids)
        except Exception:
            log.exception("settlement_done_hook_failed households=%d", len(household_ids))


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold Python's cyclic garbage collector off while a chunk is signed and sent.

    Signing and checking a payment allocates a few hundred short-lived objects (transactions,
    scripts, rows), which reference counting frees; but every 700 allocations the collector walks
    the young objects anyway, a tenth of a settlement's Python time (measured: 0.04-0.07 ms a
    household). Whatever cycles a chunk leaves are collected as soon as it ends; the memory a chunk
    holds is bounded by CHUNK (tests/bench/settlement.py watches the worker's peak).
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _settle_chunk(household_ids: list[int], period_end: datetime, now: datetime | None, network: BsvNetwork) -> Counter:
    with _collector_paused():
        try:
            results = settle_many(household_ids, period_end, now or timezone.now())
        except DatabaseError:
            log.warning("settlement_chunk_one_by_one households=%d", len(household_ids), exc_info=True)
            results = {}
        sent = _send([result.settlement_id for result in results.values() if result.settlement_id], network)
    tally: Counter = Counter()
    for household_id in household_ids:
        try:
            # Not in the results: the chunk fell back, or the household has no wallet.
            result = results.get(household_id) or settle_household(household_id, period_end, now or timezone.now())
            if result.status == "arrears" and Wallet.objects.get(household_id=household_id).sync_coins(network):
                result = settle_household(household_id, period_end, now or timezone.now())
            # A signed payment is counted by where broadcasting left it (seen, confirmed, still signed...).
            if result.settlement_id is None:
                tally[result.status] += 1
            else:
                tally[sent.get(result.settlement_id) or send_one(Settlement, result.settlement_id, network)] += 1
        except (DatabaseError, NetworkUnavailable):
            log.exception("settlement_error household=%s", household_id)
            tally["error"] += 1
    return tally


def _send(settlement_ids: list[int], network: BsvNetwork) -> dict[int, str]:
    if not settlement_ids:
        return {}
    try:
        return send_many(Settlement, settlement_ids, network)
    except (DatabaseError, NetworkUnavailable):
        # What was not recorded is still signed: send_one finishes it, household by household.
        log.exception("settlement_send_error settlements=%d", len(settlement_ids))
        return {}


def prepare_run(period_end: datetime) -> list[int]:
    with transaction.atomic():
        open_missing_wallets()
    return households_owing(period_end)
