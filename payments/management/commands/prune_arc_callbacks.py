from __future__ import annotations

from datetime import datetime

from lib.retention import PruneCommand
from payments.retention import prune_arc_callbacks


class Command(PruneCommand):
    help = (
        "prune_arc_callbacks: deletes ARC callback log rows older than N days (RETENTION_ARC_CALLBACK_DAYS); "
        "keeps every row younger than ARC_CALLBACK_MAX_AGE, which refuses replays."
    )
    days_setting = "RETENTION_ARC_CALLBACK_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> int:
        return prune_arc_callbacks(now, days, batch_size)

    def report(self, deleted: int, days: int) -> str:
        return f"Deleted {deleted} ARC callback log rows older than {days} days."
