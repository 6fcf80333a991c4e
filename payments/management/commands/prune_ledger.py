from __future__ import annotations

from datetime import datetime

from lib.retention import PruneCommand
from payments.retention import prune_ledger


class Command(PruneCommand):
    help = (
        "prune_ledger: deletes the local ledger's spent outputs, fully spent transactions and empty blocks "
        "mined more than N days ago (RETENTION_LEDGER_DAYS); keeps unspent outputs, every transaction a "
        "settlement or pass carries, and the tip."
    )
    days_setting = "RETENTION_LEDGER_DAYS"

    def prune(self, now: datetime, days: int, batch_size: int) -> dict[str, int]:
        return prune_ledger(now, days, batch_size)

    def report(self, deleted: dict[str, int], days: int) -> str:
        return (
            f"Deleted {deleted['outputs']} spent outputs, {deleted['transactions']} transactions and "
            f"{deleted['blocks']} empty blocks mined more than {days} days ago."
        )
