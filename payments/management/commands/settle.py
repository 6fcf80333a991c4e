from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from lib.periods import HOUR, floor_hour
from payments import runs
from payments.broadcast import sweep_signed
from payments.figures import closed_period_end
from payments.models import Settlement
from payments.networks import get_network


class Command(BaseCommand):
    help = "Settle the last closed hour (or the hour given) now, as beat would; running it twice pays nothing twice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hour", help="An hour to settle up to and including, ISO 8601 with offset.")

    def handle(self, *args, hour: str | None, **options) -> None:
        period_end = self.period_end(hour)
        resent = sweep_signed(Settlement, get_network())
        ids = runs.prepare_run(period_end)
        tally = runs.settle_households(ids, period_end)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(tally.items())) or "nothing owed"
        self.stdout.write(
            f"Settled hours before {period_end:%Y-%m-%d %H:%M} UTC for {len(ids)} households: {summary}"
            + (f"; re-sent {resent} signed settlements" if resent else "")
        )

    def period_end(self, hour: str | None) -> datetime:
        now = timezone.now()
        if hour is None:
            return closed_period_end(now)
        try:
            moment = datetime.fromisoformat(hour)
        except ValueError:
            raise CommandError(f"--hour {hour!r} is not an ISO 8601 date-time.") from None
        if moment.tzinfo is None:
            raise CommandError("--hour needs a UTC offset, e.g. 2026-11-22T10:00:00Z.")
        end = floor_hour(moment.astimezone(UTC)) + HOUR
        if end > closed_period_end(now):
            raise CommandError(f"The hour {moment.isoformat()} is not closed yet.")
        return end
