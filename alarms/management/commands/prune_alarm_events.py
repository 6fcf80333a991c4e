from __future__ import annotations

from datetime import datetime

from alarms.retention import prune_events
from lib.retention import PruneCommand


class Command(PruneCommand):
    help = (
        "prune_alarm_events: deletes alarm events older than N days (RETENTION_ALARM_EVENTS_DAYS) whose mail "
        "was sent or was never due; keeps every mail not yet sent and the event of every alarm still firing."
    )
    days_setting = "RETENTION_ALARM_EVENTS_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> int:
        return prune_events(now, days, batch_size)

    def report(self, deleted: int, days: int) -> str:
        return f"Deleted {deleted} alarm events older than {days} days."
