from __future__ import annotations

from datetime import datetime

from energypay.ops.retention import prune_rejections
from lib.retention import PruneCommand


class Command(PruneCommand):
    help = (
        "prune_rejections: deletes the rejected-readings counters of hours older than N days "
        "(RETENTION_REJECTIONS_DAYS); keeps the recent hours the status page sums."
    )
    days_setting = "RETENTION_REJECTIONS_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> int:
        return prune_rejections(now, days, batch_size)

    def report(self, deleted: int, days: int) -> str:
        return f"Deleted {deleted} rejection counters of hours older than {days} days."
