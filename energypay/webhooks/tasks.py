"""Celery tasks: thin wrappers around the jobs; beat runs them (settings.CELERY_BEAT_SCHEDULE)."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from energypay.webhooks import delivery, detectors, retention


@shared_task
def deliver_due() -> dict:
    """Beat, every 10 seconds, and a nudge after events commit: send what the outbox holds."""
    return dict(delivery.deliver_due())


@shared_task
def detect_events() -> dict:
    """Beat, every 5 minutes: arrears that started or ended, meters that fell silent."""
    return detectors.detect(timezone.now())


@shared_task
def prune_webhooks() -> int:
    return retention.prune_events(timezone.now(), settings.RETENTION_WEBHOOK_DAYS, settings.RETENTION_BATCH_SIZE)
