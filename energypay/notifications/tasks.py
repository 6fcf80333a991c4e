"""Celery tasks: thin wrappers (docs/architecture.md, "Conventions")."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from energypay.notifications import mailing, retention


@shared_task
def send_mail() -> dict:
    return dict(mailing.send_due())


@shared_task
def prune_notifications() -> int:
    return retention.prune_notifications(
        timezone.now(), settings.RETENTION_NOTIFICATION_DAYS, settings.RETENTION_BATCH_SIZE
    )
