"""Celery tasks of meters: thin wrappers around the jobs; CELERY_BEAT_SCHEDULE runs them."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from meters import partitions
from meters.contracts import advance_tariffs
from meters.standing import accrue_standing_charges


@shared_task
def accrue_standing() -> int:
    """Hourly, before settlement: households move onto tariffs that began; every contract's standing charge accrues."""
    now = timezone.now()
    advance_tariffs(now)
    return accrue_standing_charges(now)


@shared_task
def ensure_partitions() -> dict:
    """Make partitions ahead and move rows the default partition caught (meters/partitions.py)."""
    return partitions.ensure_partitions(timezone.now()).as_json()
