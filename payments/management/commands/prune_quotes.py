from __future__ import annotations

from datetime import datetime

from lib.retention import PruneCommand
from payments.retention import prune_quotes


class Command(PruneCommand):
    help = (
        "prune_quotes: deletes price quotes older than N days (RETENTION_QUOTES_DAYS) that no settlement "
        "used; keeps every quote a settlement used, the newest, and any a settlement may still take."
    )
    days_setting = "RETENTION_QUOTES_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> int:
        return prune_quotes(now, days, batch_size)

    def report(self, deleted: int, days: int) -> str:
        return f"Deleted {deleted} price quotes older than {days} days that no settlement used."
