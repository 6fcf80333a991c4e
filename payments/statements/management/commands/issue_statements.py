from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from meters.models import Household
from payments.statements import corrections, issuing


class Command(BaseCommand):
    help = "Issue the statements due (or a month's), then any corrective notes, as beat would; nothing is issued twice."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--month", help="A calendar month YYYY-MM (each household's local month); default: all due."
        )
        parser.add_argument("--household", type=int, help="Only this household (its id).")

    def handle(self, *args, month: str | None, household: int | None, **options) -> None:
        now = timezone.now()
        first = self.parse_month(month)
        ids = self.household_ids(household)
        if first is None:
            tally = issuing.issue_due(now) if ids is None else self.issue_due_for(ids, now)
        else:
            tally = issuing.issue_households(ids if ids is not None else self.all_ids(), first, now=now)
        self.stdout.write(f"Statements: {self.describe(tally, 'issued')}.")
        corrected = corrections.check(now, household_ids=ids, month=first)
        self.stdout.write(
            f"Corrective notes: {corrected['corrected']} issued "
            f"({corrected['compared']} months compared, {corrected['changed']} changed in the ledger)."
        )

    def parse_month(self, text: str | None) -> date | None:
        if text is None:
            return None
        try:
            year, month = (int(part) for part in text.split("-"))
            return date(year, month, 1)
        except ValueError:
            raise CommandError(f"--month {text!r} is not a month like 2026-11.") from None

    def household_ids(self, household: int | None) -> list[int] | None:
        if household is None:
            return None
        if not Household.objects.filter(pk=household).exists():
            raise CommandError(f"There is no household {household}.")
        return [household]

    def all_ids(self) -> list[int]:
        return list(Household.objects.order_by("pk").values_list("pk", flat=True))

    def issue_due_for(self, ids: list[int], now) -> dict:
        tally: dict = {}
        for batch in issuing.due(now, household_ids=ids):
            for key, count in issuing.issue_households(batch.household_ids, batch.month, now=now).items():
                tally[key] = tally.get(key, 0) + count
        return tally

    def describe(self, tally, first: str) -> str:
        labels = {
            "issued": "issued",
            "already_issued": "already issued",
            "not_closed": "month not over yet",
            "no_contract": "household created after the month",
        }
        parts = [f"{tally.get(key, 0)} {label}" for key, label in labels.items() if key == first or tally.get(key)]
        return ", ".join(parts)
