"""The hourly run: which households to settle, in chunks any number of workers can share."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.db import DatabaseError, transaction
from django.utils import timezone

from meters.models import HourlyUsage
from payments.models import Wallet
from payments.networks import NetworkUnavailable, get_network
from payments.settlement import broadcast_settlement, settle_household
from payments.wallets import open_missing_wallets, sync_coins

log = logging.getLogger(__name__)

CHUNK = 200


def households_owing(period_end: datetime) -> list[int]:
    """Households with open, priced usage before ``period_end`` (the partial index on open lines serves this)."""
    owing = HourlyUsage.objects.filter(hour_start__lt=period_end, settled_at__isnull=True, cost_eur__isnull=False)
    return sorted(set(owing.values_list("household_id", flat=True)))


def chunks(ids: list[int], size: int = CHUNK) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def settle_households(household_ids: list[int], period_end: datetime, now: datetime | None = None) -> Counter:
    """Settle each household, then broadcast what was signed. Returns how many ended how.

    A household in arrears gets one more try after asking the network for deposits. One household's
    failure is logged and counted; the rest of the chunk still settles.
    """
    network = get_network()
    tally: Counter = Counter()
    for household_id in household_ids:
        try:
            result = settle_household(household_id, period_end, now or timezone.now())
            if result.status == "arrears" and sync_coins(Wallet.objects.get(household_id=household_id), network):
                result = settle_household(household_id, period_end, now or timezone.now())
            # A signed payment is counted by where broadcasting left it (seen, confirmed, still signed...).
            if result.settlement_id is None:
                tally[result.status] += 1
            else:
                tally[broadcast_settlement(result.settlement_id, network)] += 1
        except (DatabaseError, NetworkUnavailable):
            log.exception("settlement_error household=%s", household_id)
            tally["error"] += 1
    return tally


def prepare_run(period_end: datetime) -> list[int]:
    with transaction.atomic():
        open_missing_wallets()
    return households_owing(period_end)
