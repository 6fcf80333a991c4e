"""The hourly run: which households to settle, in chunks any number of workers can share."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from meters.models import HourlyUsage
from payments.networks import get_network
from payments.settlement import broadcast_settlement, settle_household
from payments.wallets import open_missing_wallets

CHUNK = 200


def households_owing(period_end: datetime) -> list[int]:
    """Households with open, priced usage before ``period_end`` (the partial index on open lines serves this)."""
    owing = HourlyUsage.objects.filter(hour_start__lt=period_end, settled_at__isnull=True, cost_eur__isnull=False)
    return sorted(set(owing.values_list("household_id", flat=True)))


def chunks(ids: list[int], size: int = CHUNK) -> Iterable[list[int]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]


def settle_households(household_ids: list[int], period_end: datetime, now: datetime | None = None) -> Counter:
    """Settle each household, then broadcast what was signed. Returns how many ended how."""
    network = get_network()
    tally: Counter = Counter()
    for household_id in household_ids:
        result = settle_household(household_id, period_end, now or timezone.now())
        tally[result.status] += 1
        if result.settlement_id is not None:
            tally[broadcast_settlement(result.settlement_id, network)] += 1
    return tally


def prepare_run(period_end: datetime) -> list[int]:
    with transaction.atomic():
        open_missing_wallets()
    return households_owing(period_end)
