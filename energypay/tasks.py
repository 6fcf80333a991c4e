from __future__ import annotations

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "energypay:beat:last-tick"


@shared_task
def heartbeat() -> None:
    """Record that beat is ticking and a worker is consuming; health checks read it."""
    cache.set(HEARTBEAT_KEY, timezone.now().isoformat(), timeout=None)
