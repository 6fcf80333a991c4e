from __future__ import annotations

from datetime import datetime

from energypay.webhooks.retention import prune_events
from lib.retention import PruneCommand


class Command(PruneCommand):
    help = (
        "prune_webhooks: deletes webhook events older than N days (RETENTION_WEBHOOK_DAYS) with their deliveries "
        "and delivery log, once every delivery is done (delivered or given up); keeps every delivery still pending."
    )
    days_setting = "RETENTION_WEBHOOK_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> int:
        return prune_events(now, days, batch_size)

    def report(self, deleted: int, days: int) -> str:
        return f"Deleted {deleted} webhook events, deliveries and attempts older than {days} days."
