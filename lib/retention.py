"""Bounded deletes for every app's retention commands, and the command they share.

One DELETE of a year of rows would hold its locks, and grow one transaction, for as long as it
runs; deleting a batch of primary keys at a time keeps each lock short, so ingest, settlement and
the pages never wait long behind a prune.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

if TYPE_CHECKING:  # lib/ imports no models; a queryset is only what callers hand in
    from django.db.models import QuerySet


def older_than(now: datetime, days: int) -> datetime:
    """The instant ``days`` days before ``now``: rows from before it are old enough to go."""
    return now - timedelta(days=days)


def delete_in_batches(rows: QuerySet, batch_size: int) -> int:
    """Delete the rows of ``rows``, ``batch_size`` at a time, each batch in its own transaction; returns how many.

    Each batch picks the next primary keys by the same filter and deletes ``rows.filter(pk__in=...)``,
    so the filter is applied again at the moment of the DELETE: a row that stopped qualifying since
    it was picked (a reference written meanwhile) stays.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    total = 0
    while True:
        with transaction.atomic():
            ids = list(rows.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            deleted, _ = rows.filter(pk__in=ids).delete()
        total += deleted
        if len(ids) < batch_size:
            return total


class PruneCommand(BaseCommand):
    """A retention command: ``--days`` (default: the setting named by ``days_setting``) and ``--batch-size``.

    Subclasses say what they delete in ``prune`` and return what ``report`` prints.
    """

    days_setting: str

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--days", type=int, default=None, help=f"Keep this many days (default: settings.{self.days_setting})."
        )
        parser.add_argument(
            "--batch-size", type=int, default=None, help="Rows per DELETE (default: settings.RETENTION_BATCH_SIZE)."
        )

    def handle(self, *args, days: int | None, batch_size: int | None, **options) -> None:
        days = getattr(settings, self.days_setting) if days is None else days
        batch_size = settings.RETENTION_BATCH_SIZE if batch_size is None else batch_size
        if days < 1 or batch_size < 1:
            raise CommandError("--days and --batch-size must be at least 1.")
        self.stdout.write(self.report(self.prune(timezone.now(), days, batch_size), days))

    def prune(self, now: datetime, days: int, batch_size: int) -> Any:
        raise NotImplementedError

    def report(self, deleted: Any, days: int) -> str:
        raise NotImplementedError
