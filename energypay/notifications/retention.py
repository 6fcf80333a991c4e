"""Retention for notifications: those seen (or never meant for the page) and mailed, kept for a while."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q

from energypay.notifications.models import Notification
from lib.retention import delete_in_batches, older_than


def prunable(now: datetime, days: int):
    """Notifications older than ``days`` days that are read (or not shown in the badge) and not waiting for a mail.

    An unread one stays, however old: the household has not seen it yet. So does one whose mail is
    still being retried.
    """
    seen = Q(read_at__isnull=False) | Q(badge=False)
    no_mail_waiting = Q(next_attempt_at__isnull=True) | Q(mailed_at__isnull=False)
    return Notification.objects.filter(seen & no_mail_waiting, created_at__lt=older_than(now, days))


def prune_notifications(now: datetime, days: int, batch_size: int) -> int:
    return delete_in_batches(prunable(now, days), batch_size)
