from __future__ import annotations

from datetime import UTC, date, datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.utils import timezone

from meters import partitions


class Command(BaseCommand):
    help = (
        "Create the readings' and hourly ledger's partitions ahead and move rows the default partition "
        "caught into partitions of their own, as beat does every hour (PostgreSQL; drops nothing)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ahead",
            type=int,
            default=None,
            help=f"Periods to create ahead of this one (default PARTITIONS_AHEAD, {settings.PARTITIONS_AHEAD}).",
        )
        parser.add_argument(
            "--since",
            type=date.fromisoformat,
            default=None,
            help="Also every period from this day (YYYY-MM-DD, UTC) to now, e.g. before importing history in bulk.",
        )

    def handle(self, *args, ahead: int | None, since: date | None, **options) -> None:
        if ahead is not None and ahead < 0:
            raise CommandError("--ahead must be 0 or more; nothing was changed.")
        if connection.vendor != "postgresql":
            self.stdout.write("Not PostgreSQL: readings and the hourly ledger are plain tables, nothing to do.")
            return
        start = datetime(since.year, since.month, since.day, tzinfo=UTC) if since else None
        report = partitions.ensure_partitions(timezone.now(), ahead=ahead, since=start)
        self.show(report)
        if report.failed:
            raise CommandError(f"{len(report.failed)} partitions not created (the default partition keeps their rows).")

    def show(self, report: partitions.Report) -> None:
        interval = settings.PARTITION_INTERVAL
        if report.created:
            self.stdout.write(f"Created {len(report.created)} {interval} partitions: {', '.join(report.created)}.")
        else:
            self.stdout.write(f"Every {interval} partition needed exists.")
        if report.moved:
            self.stdout.write(f"Moved {report.moved} rows out of the default partitions.")
        for failure in report.failed:
            self.stderr.write(f"Not created: {failure}", style_func=self.style.WARNING)
