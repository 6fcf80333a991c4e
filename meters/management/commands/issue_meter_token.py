from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from meters.models import Meter


class Command(BaseCommand):
    help = "Print a new ingest token for the meter with this serial; its previous token stops working."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("serial", help="The meter's serial number, e.g. DEMO-0001.")

    def handle(self, *args, serial: str, **options) -> None:
        meter = self.load_meter(serial)
        token = meter.issue_token()
        # stdout carries only the token, so `TOKEN=$(manage.py issue_meter_token SN)` works.
        self.stdout.write(token)
        self.stderr.write(
            f"Meter {meter.serial}: new token issued and shown only this once; the previous token no longer works.",
            style_func=self.style.WARNING,
        )
        if not meter.is_active:
            self.stderr.write(
                f"Meter {meter.serial} is inactive: its token is refused until staff activate it again.",
                style_func=self.style.WARNING,
            )

    def load_meter(self, serial: str) -> Meter:
        meter = Meter.objects.filter(serial=serial.strip()).first()
        if meter is None:
            raise CommandError(f"No meter has the serial {serial!r}; nothing was changed.")
        return meter
