"""Retention for the rejected-readings counters: one row per (hour, reason), read by the status page."""

from __future__ import annotations

from datetime import datetime

from energypay.ops.models import RejectionCount
from lib.retention import delete_in_batches, older_than


def prune_rejections(now: datetime, days: int, batch_size: int) -> int:
    """Delete the counters of hours that started more than ``days`` days ago (the status page reads the last day)."""
    return delete_in_batches(RejectionCount.objects.filter(hour_start__lt=older_than(now, days)), batch_size)
