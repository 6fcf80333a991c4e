from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from energypay.ops.models import Heartbeat
from energypay.ops.retention import prune_rejections as _prune_rejections

HEARTBEAT = "heartbeat"


@shared_task
def heartbeat() -> None:
    """Record that beat is ticking and a worker is consuming; /healthz and the status page read it.

    One UPDATE of one row in the database, which every process sees whatever the cache and broker.
    """
    Heartbeat.beat(HEARTBEAT, timezone.now())


@shared_task
def prune_rejections() -> int:
    return _prune_rejections(timezone.now(), settings.RETENTION_REJECTIONS_DAYS, settings.RETENTION_BATCH_SIZE)
