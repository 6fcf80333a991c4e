"""Celery tasks: thin wrappers around the jobs (docs/architecture.md, "Conventions"); beat runs the periodic ones."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from alarms import evaluation, notify, retention

CHUNK = 500  # households per evaluation task


@shared_task(acks_late=True)
def evaluate_households(household_ids: list[int], scope: str = "all") -> dict:
    return dict(evaluation.evaluate_households(household_ids, scope))


@shared_task
def evaluate_periodic() -> int:
    """Beat, every few minutes: households with time-based or firing rules, a chunk per task."""
    ids = evaluation.households_for_periodic()
    for start in range(0, len(ids), CHUNK):
        evaluate_households.delay(ids[start : start + CHUNK], "periodic")
    return len(ids)


@shared_task
def send_notifications() -> dict:
    """Beat, every minute: mail what the outbox holds."""
    return dict(notify.send_due())


@shared_task
def prune_alarm_events() -> int:
    return retention.prune_events(timezone.now(), settings.RETENTION_ALARM_EVENTS_DAYS, settings.RETENTION_BATCH_SIZE)
