from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.statements import corrections
from payments.statements.models import Statement


class Command(BaseCommand):
    help = (
        "Issue the factura rectificativa a statement's month needs now (by differences), with its cause: R1 (error "
        "founded in law, art. 80 One, Two and Six LIVA), R2 (art. 80 Three), R3 (art. 80 Four) or R4 (the rest)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("number", help="The month's statement's number, e.g. EP-2026-000123.")
        parser.add_argument("--type", dest="rectification_type", required=True, choices=["R1", "R2", "R3", "R4"])
        parser.add_argument("--reason", required=True, help="The cause in words, as the document will say it.")

    def handle(self, *args, number: str, rectification_type: str, reason: str, **options) -> None:
        statement = Statement.objects.filter(code=number.strip()).first()
        if statement is None:
            raise CommandError(f"There is no statement {number!r}.")
        if statement.kind != Statement.Kind.STATEMENT:
            raise CommandError(
                f"{statement.code} is a corrective note: give the month's statement, {statement.corrects}."
            )
        if not reason.strip():
            raise CommandError("Say what the correction is for (--reason).")
        note = corrections.correct(
            statement.household_id, statement.month, rectification_type=rectification_type, reason=reason
        )
        if note is None:
            self.stdout.write(f"{statement.code}: the ledger has not changed since; nothing to rectify.")
            return
        self.stdout.write(
            f"Issued {note.code} ({note.rectification_type}, by differences) rectifying {statement.code}: "
            f"{note.total_eur} EUR."
        )
