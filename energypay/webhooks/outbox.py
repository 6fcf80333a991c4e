"""Writing events into the outbox, in the transaction of the change they describe (settings.EVENT_HOOK).

payments, alarms and meters call ``meters.hooks.emit`` inside their own transaction; it lands here.
The event row and one delivery row per subscribed endpoint are inserted in that transaction, so they
commit with the change (never lost) or roll back with it (never sent for a change that did not
happen). Nothing here talks to the network: after the commit, a nudge asks a worker to send soon
(beat also sends every few seconds, so a nudge that is lost only delays).

An event that no endpoint subscribes to writes nothing: a settlement confirmed costs one small
query of the endpoints, not a row, until somebody listens.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from energypay.celery import app
from energypay.webhooks import events
from energypay.webhooks.models import WebhookDelivery, WebhookEndpoint, WebhookEvent

log = logging.getLogger(__name__)

DELIVER_TASK = "energypay.webhooks.tasks.deliver_due"
NUDGE_KEY = "webhooks:nudge"
NUDGE_SECONDS = 2  # at most one nudge per this many seconds per cache: a burst of events wakes one worker


def record(items: Iterable[tuple[str, int | None, dict]]) -> int:
    """EVENT_HOOK: store ``(type, household id, data)`` events for their subscribers; returns how many were stored.

    Inside the caller's transaction when there is one (no savepoint: a failure fails the caller's
    change, as it should), else in one of its own.
    """
    items = list(items)
    for event_type, _, _ in items:
        events.check(event_type)
    listeners = subscribers()
    wanted = [item for item in items if listeners.get(item[0])]
    if not wanted:
        return 0
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        stored = WebhookEvent.objects.bulk_create(
            WebhookEvent(
                type=kind, household_id=household_id, body=WebhookEvent.render(kind, data, now), created_at=now
            )
            for kind, household_id, data in wanted
        )
        WebhookDelivery.objects.bulk_create(
            new_delivery(event, endpoint_id, now) for event in stored for endpoint_id in listeners[event.type]
        )
    transaction.on_commit(nudge, robust=True)
    return len(stored)


def record_for(endpoint: WebhookEndpoint, event_type: str, data: dict) -> WebhookDelivery:
    """One event for one endpoint, whatever it subscribes to (the admin's "send test event")."""
    now = timezone.now()
    with transaction.atomic():
        event = WebhookEvent.objects.create(
            type=event_type, body=WebhookEvent.render(event_type, data, now), created_at=now
        )
        delivery = new_delivery(event, endpoint.pk, now)
        delivery.save(force_insert=True)
    transaction.on_commit(nudge, robust=True)
    return delivery


def subscribers() -> dict[str, list[int]]:
    """Event type -> the ids of the active endpoints subscribed to it (one query; there are a handful)."""
    listeners: dict[str, list[int]] = {}
    for endpoint_id, types in WebhookEndpoint.objects.filter(active=True).order_by("pk").values_list("pk", "events"):
        for event_type in types or []:
            listeners.setdefault(event_type, []).append(endpoint_id)
    return listeners


def new_delivery(event: WebhookEvent, endpoint_id: int, now: datetime) -> WebhookDelivery:
    return WebhookDelivery(
        event=event,
        endpoint_id=endpoint_id,
        next_attempt_at=now,
        retry_until=now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS),
        created_at=now,
    )


def nudge() -> None:
    """Ask a worker to send now rather than at beat's next tick; at most once per NUDGE_SECONDS per cache."""
    try:
        if not cache.add(NUDGE_KEY, 1, NUDGE_SECONDS):
            return
        # By name: the task module imports the jobs, which import this module.
        app.send_task(DELIVER_TASK)
    except Exception:  # a broker or cache that is down costs a few seconds: beat sends every few seconds anyway
        log.warning("webhook_nudge_failed", exc_info=True)
