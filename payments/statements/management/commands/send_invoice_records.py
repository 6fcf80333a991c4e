from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.statements.verifactu import sending


class Command(BaseCommand):
    help = "Send the pending VERI*FACTU records to the AEAT now, as beat does (honouring its wait); prints the outcome."

    def handle(self, *args, **options) -> None:
        if not settings.VERIFACTU_SEND_ENABLED:
            raise CommandError("Sending is off (VERIFACTU_SEND_ENABLED): the records are kept, nothing is sent.")
        tally = sending.send_due()
        if not tally:
            self.stdout.write("Nothing to send now (nothing pending, a batch in flight, or the AEAT's wait).")
            return
        self.stdout.write(", ".join(f"{count} {state}" for state, count in sorted(tally.items())) + ".")
