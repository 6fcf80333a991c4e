"""Retention for alarm events: the outbox keeps every mail until it is sent, and history for a while after."""

from __future__ import annotations

from datetime import datetime

from django.db.models import F, Q

from alarms.models import AlarmEvent
from lib.retention import delete_in_batches, older_than


def prunable_events(now: datetime, days: int):
    """Events older than ``days`` days that the outbox is done with, except those of alarms still firing.

    Done: mailed (``notified_at``), or never to be mailed (a muted rule's: no next attempt). A mail
    still waiting or retrying is never deleted, however old. The event that fired a rule still
    firing stays too: it is the open alarm the household sees, and its clearing will follow it.
    """
    done = Q(notified_at__isnull=False) | Q(next_attempt_at__isnull=True)
    open_alarm = Q(kind=AlarmEvent.Kind.FIRED, rule__firing=True, at__gte=F("rule__since"))
    return AlarmEvent.objects.filter(done, at__lt=older_than(now, days)).exclude(open_alarm)


def prune_events(now: datetime, days: int, batch_size: int) -> int:
    return delete_in_batches(prunable_events(now, days), batch_size)
