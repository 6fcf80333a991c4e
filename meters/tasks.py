"""Celery tasks of meters: thin wrappers around the jobs; CELERY_BEAT_SCHEDULE runs them."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from meters import partitions


@shared_task
def ensure_partitions() -> dict:
    """Make partitions ahead and move rows the default partition caught (meters/partitions.py)."""
    return partitions.ensure_partitions(timezone.now()).as_json()
