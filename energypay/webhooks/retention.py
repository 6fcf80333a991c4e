"""Retention for the webhook outbox: events and their delivery log kept for a while after they are done."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Exists, OuterRef

from energypay.webhooks.models import WebhookDelivery, WebhookEvent
from lib.retention import delete_in_batches, older_than


def prunable_events(now: datetime, days: int):
    """Events older than ``days`` days none of whose deliveries is still pending (delivered or given up).

    A delivery still waiting (retrying, or held for a disabled endpoint) is never deleted, however old.
    Deleting an event deletes its deliveries and their attempts with it.
    """
    pending = WebhookDelivery.objects.filter(event=OuterRef("pk"), state=WebhookDelivery.State.PENDING)
    return WebhookEvent.objects.filter(created_at__lt=older_than(now, days)).exclude(Exists(pending))


def prune_events(now: datetime, days: int, batch_size: int) -> int:
    return delete_in_batches(prunable_events(now, days), batch_size)
