from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.statements.models import Statement
from payments.statements.verifactu import records


class Command(BaseCommand):
    help = "Record that an issued statement should not exist: a VERI*FACTU registro de anulación (the document stays)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("number", help="The statement's number, e.g. EP-2026-000123.")
        parser.add_argument("--reason", required=True, help="Why it should not exist (kept with the record).")

    def handle(self, *args, number: str, reason: str, **options) -> None:
        statement = Statement.objects.filter(code=number.strip()).first()
        if statement is None:
            raise CommandError(f"There is no statement {number!r}.")
        if not reason.strip():
            raise CommandError("Say why the statement should not exist (--reason).")
        try:
            record = records.cancel(statement, reason=reason.strip())
        except records.RecordRefused as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(
            f"Cancelled {statement.code}: registro de anulación #{record.position} of {record.issuer_tax_id}."
        )
