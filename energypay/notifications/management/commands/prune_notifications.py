from __future__ import annotations

from datetime import datetime

from energypay.notifications.retention import prune_notifications
from lib.retention import PruneCommand


class Command(PruneCommand):
    help = (
        "prune_notifications: deletes household notifications older than N days (RETENTION_NOTIFICATION_DAYS) "
        "once read (or never shown in the page); keeps every unread one and every one whose mail is not sent yet."
    )
    days_setting = "RETENTION_NOTIFICATION_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> int:
        return prune_notifications(now, days, batch_size)

    def report(self, deleted: int, days: int) -> str:
        return f"Deleted {deleted} notifications older than {days} days."
