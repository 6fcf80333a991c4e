from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from meters.models import TaxRule
from meters.tax_corrections import CorrectionRefused
from payments.statements import corrections


class Command(BaseCommand):
    help = (
        "Correct a tax rule's rate on days already billed: a correcting rule for those days, correction lines in "
        "the ledger (the next settlement pays or credits the difference) and an R1 factura rectificativa by "
        "differences for every issued statement concerned. The rule itself and issued documents are not changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("rule", type=int, help="The id of the tax rule whose rate was wrong.")
        parser.add_argument("--rate", help="The right rate, a fraction: 0.21 for 21%%.")
        parser.add_argument("--from", dest="first_day", help="First local day to correct (YYYY-MM-DD).")
        parser.add_argument("--to", dest="last_day", help="Last local day to correct (YYYY-MM-DD), included.")
        parser.add_argument("--name", default="", help='The name the statements show, e.g. "IVA 21%%".')
        parser.add_argument("--reason", default="", help="Why: the rectificativas print it as their cause.")
        parser.add_argument(
            "--by", default="", help="The staff member's login (kept on the notes and in the audit log)."
        )
        parser.add_argument(
            "--again",
            action="store_true",
            help="RULE is a correcting rule made earlier: re-tax what is still at the old rate and issue the "
            "notes still missing.",
        )

    def handle(self, *args, rule: int, again: bool, by: str, **options) -> None:
        found = TaxRule.objects.filter(pk=rule).first()
        if found is None:
            raise CommandError(f"There is no tax rule {rule}.")
        user = None
        if by:
            model = get_user_model()
            user = model.objects.filter(**{model.USERNAME_FIELD: by}, is_staff=True).first()
            if user is None:
                raise CommandError(f"There is no staff member {by!r}.")
        try:
            if again:
                if found.replaces_id is None:
                    raise CommandError(f"{found} is not a correction: --again takes a correcting rule's id.")
                correction, notes = found, corrections.retax_and_rectify(found, acting_user=user)
            else:
                correction, notes = corrections.correct_tax_rate(
                    found,
                    _rate(options["rate"]),
                    _day(options["first_day"], "--from"),
                    _day(options["last_day"], "--to"),
                    reason=options["reason"],
                    name=options["name"],
                    acting_user=user,
                )
        except CorrectionRefused as refused:
            raise CommandError(str(refused)) from None
        self.stdout.write(f"Correcting rule {correction.pk}: {correction} replaces {correction.replaces}.")
        for note in notes:
            self.stdout.write(
                f"Issued {note.code} (R1, by differences) rectifying {note.corrects.code}: {note.total_eur} EUR."
            )
        if not notes:
            self.stdout.write("No issued statement needed a rectificativa.")


def _rate(text: str | None) -> Decimal:
    try:
        return Decimal((text or "").strip())
    except InvalidOperation:
        raise CommandError("--rate is a fraction: 0.21 for 21%.") from None


def _day(text: str | None, option: str) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise CommandError(f"{option} is a day, YYYY-MM-DD.") from None
