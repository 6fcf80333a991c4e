from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Sum
from django.utils import timezone

from energypay.accounts.models import User
from energypay.accounts.otp import APP_DEVICE_NAME, new_recovery_codes, secret_text
from energypay.webhooks import demo
from lib.money import eur_to_satoshis, format_money
from lib.periods import HOUR, add_months, first_of_month, floor_hour, local_date, local_midnight
from meters.demo import TIMEZONE, DemoHome, SeedMeters
from meters.ingest import ingest_readings
from meters.load_profile import floor_slot
from meters.models import Household
from meters.schema import ReadingIn
from payments import runs
from payments.broadcast import refresh_pending
from payments.figures import line_amount
from payments.models import PriceQuote, Settlement, Utxo
from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.models import BillDisclosure, Distributor
from payments.wallets import open_wallet

DAYS_AHEAD_EUR = Decimal("15")  # what a funded wallet holds beyond its history: about a week of electricity
SETTLED_HOURS = 48
DEMO_DISTRIBUTOR = "0021"  # the distributor code of meters.demo.demo_cups
# An illustrative electricity mix (%, adding up to 100) for the demo's bill disclosure, not any year's.
DEMO_MIX = {
    "renewable": "56.00",
    "high_efficiency_cogeneration": "3.00",
    "cogeneration": "5.00",
    "combined_cycle": "15.00",
    "coal": "1.00",
    "fuel_gas": "1.00",
    "nuclear": "19.00",
    "other": "0.00",
}
# The demo login's meter was offline from 21:00 on last month's last day to 09:00 on the first: its
# readings, spread evenly at first, arrive after the month's statement, which then needs a corrective note
# (the evening peak was in the old month).
OFFLINE_BEFORE, OFFLINE_AFTER = timedelta(hours=3), timedelta(hours=9)


class Command(SeedMeters):
    help = (
        "Create or top up demo data: tariffs, logins, households, meters, readings, funded wallets, settlements, "
        "last month's statements and a corrective note."
    )

    # Enough history that last month's end is always in it: 31 days and the demo meter's hours offline.
    default_days = 32

    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--webhook-port", type=int, default=demo.DEMO_PORT, help="The demo webhook receiver's port (8001)."
        )

    def handle(self, *args, days: int, webhook_port: int = demo.DEMO_PORT, **options) -> None:
        """Steps, each safe to repeat: the meters' demo data, then
        5. the demo's webhook endpoint (a receiver on 127.0.0.1 that `make demo` starts), subscribed to every event;
        6. a wallet per household, funded from the local faucet (all but the last: it shows arrears);
        7. the last SETTLED_HOURS hours settled hour by hour, as beat would have, with blocks mined
           (each settlement confirmed is an event for the receiver, sent once a worker runs);
        8. last month's statements, as beat would have issued them; the demo login's meter then uploads the
           readings it buffered while offline over that month's end (when the history reaches back that
           far, as the default does), which brings a corrective note (the energy moved between the two
           months, so what the household owes in all hardly changes).
        """
        now = timezone.now()
        self.last_month_end = local_midnight(first_of_month(local_date(now, TIMEZONE)), TIMEZONE)
        self.late_readings: list[tuple[datetime, Decimal]] = []
        self.history_start = floor_slot(now) - timedelta(days=days)  # as SeedMeters.handle computes it
        with quiet("meters.contracts"):  # a "contract_started" line per household says nothing the summary does not
            super().handle(*args, days=days, **options)
        homes = self.homes
        self.create_webhook_endpoint(webhook_port)
        if settings.BSV_NETWORK != "local":
            self.stdout.write(f"BSV_NETWORK={settings.BSV_NETWORK}: wallets opened; fund them and run settle.")
            for home in homes:
                open_wallet(home.household)
            self.print_staff_second_factor()
            return
        with quiet("payments"):  # hundreds of per-settlement log lines would bury the summary
            self.fund_wallets(homes)
            self.settle_history(homes)
            self.create_bill_disclosure()
            self.issue_statements(homes)
        self.print_staff_second_factor()

    @transaction.atomic
    def create_staff(self) -> User:
        """The demo staff user, enrolled in the admin's second factor as a staff member would be on first login.

        Its authenticator secret stays the same across runs; the recovery codes are new on every run, so the
        ones printed always work.
        """
        from django_otp.plugins.otp_totp.models import TOTPDevice

        staff = super().create_staff()
        device = TOTPDevice.objects.filter(user=staff, confirmed=True).order_by("pk").first()
        self.staff_app = device or TOTPDevice.objects.create(user=staff, name=APP_DEVICE_NAME, confirmed=True)
        self.staff_codes = new_recovery_codes(staff)
        return staff

    def create_webhook_endpoint(self, port: int) -> None:
        endpoint, created = demo.ensure_endpoint(port)
        self.stdout.write(
            f"Webhooks: {'added' if created else 'kept'} the endpoint {endpoint.url}; its delivery log is at "
            "/admin/webhooks/webhookdelivery/ (the receiver prints what it gets)."
        )

    def print_staff_second_factor(self) -> None:
        self.stdout.write(
            f"Staff second factor (admin, after the password): any one of the recovery codes "
            f"{' '.join(self.staff_codes)} (each works once; a rerun prints new ones), or add the key "
            f"{secret_text(self.staff_app)} (TOTP, 6 digits, 30 s) to an authenticator app."
        )

    def create_households(self, count, tariffs) -> list[DemoHome]:
        self.homes = super().create_households(count, tariffs)
        # A demo household's contract began with its history, not when this command made its row.
        new = [home.household.pk for home in self.homes if home.created]
        Household.objects.filter(pk__in=new).update(created_at=self.history_start)
        return self.homes

    def readings_for(self, home: DemoHome, now: datetime, history_start: datetime) -> list[tuple[datetime, Decimal]]:
        """The demo login's new meter keeps the readings of OFFLINE either side of last month's end for later."""
        readings = super().readings_for(home, now, history_start)
        start, end = self.last_month_end - OFFLINE_BEFORE, self.last_month_end + OFFLINE_AFTER
        new_demo_meter = home.index == 1 and home.meter.last_reading_at is None
        if not new_demo_meter or start < history_start or end + HOUR > floor_slot(now):
            return readings
        self.late_readings = [(at, kwh) for at, kwh in readings if start < at < end]
        return [(at, kwh) for at, kwh in readings if not start < at < end]

    def fund_wallets(self, homes: list[DemoHome]) -> None:
        from payments.networks.local import LocalLedger

        ledger = LocalLedger()
        funded = []
        for home in homes[:-1] if len(homes) > 1 else homes:
            wallet = open_wallet(home.household)
            if not Utxo.objects.filter(wallet=wallet).exists():
                owed = home.household.usage.aggregate(eur=Sum(line_amount()))["eur"] or Decimal("0")
                ledger.fund(wallet.address, eur_to_satoshis(owed + DAYS_AHEAD_EUR, settings.BSV_EUR_PRICE))
                funded.append(wallet)
        ledger.mine()  # settlement spends deposits once they are confirmed
        for wallet in funded:
            wallet.sync_coins(ledger)
        open_wallet(homes[-1].household)  # never funded: the demo's household in arrears

    def settle_history(self, homes: list[DemoHome]) -> None:
        from payments.networks.local import LocalLedger

        ledger = LocalLedger()
        ids = [home.household.pk for home in homes]
        last_end = floor_hour(timezone.now())
        # A rerun settles the hours since the last run, as beat would: never an old hour's run again (whose
        # open lines, late readings' true-ups, the next run pays with everything else owed).
        done = Settlement.objects.filter(household_id__in=ids).aggregate(end=Max("period_end"))["end"]
        tally: dict[str, int] = {}
        for hours_ago in range(SETTLED_HOURS, -1, -1):
            period_end = last_end - hours_ago * HOUR
            if done is not None and period_end <= done:
                continue
            PriceQuote.objects.get_or_create(
                source="fixed", fetched_at=period_end, defaults={"bsv_eur": settings.BSV_EUR_PRICE}
            )
            for status, count in runs.settle_households(ids, period_end, now=period_end + timedelta(minutes=5)).items():
                tally[status] = tally.get(status, 0) + count
            if hours_ago % 6 == 0:
                ledger.mine()
        # As the watcher would have: what a block holds is confirmed (the pages show final states).
        confirmed = refresh_pending(Settlement, ledger)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(tally.items())) or "nothing new"
        self.stdout.write(f"Settled the last {SETTLED_HOURS} hours one by one: {summary}; {confirmed} confirmed.")

    def create_bill_disclosure(self) -> None:
        """What a Spanish bill prints besides the figures (docs/spain.md): the demo CUPS's distributor and the
        year's disclosure. Illustrative texts and figures, marked as the demo's: staff enter the real ones."""
        Distributor.objects.get_or_create(
            code=DEMO_DISTRIBUTOR, defaults={"name": "Distribuidora de demostración", "fault_phone": "900 000 000"}
        )
        if BillDisclosure.objects.exists():
            return
        disclosure = BillDisclosure(
            year=2025,
            valid_from=date(2026, 1, 1),
            **{f"mix_{source}": Decimal(share) for source, share in DEMO_MIX.items()},
            co2_g_per_kwh=Decimal("95.00"),
            radioactive_waste_mg_per_kwh=Decimal("0.2000"),
            source_note="Demo figures, not the CNMC's labelling of any year.",
            switching_text="Cambiar de comercializadora es gratuito: la nueva comercializadora lo tramita por usted.",
            claims_text="Reclamaciones (demo): 900 000 000, reclamaciones@example.com.",
            odr_text="Resolución extrajudicial (demo): la Junta Arbitral de Consumo de su comunidad autónoma.",
            bono_social_text="Si cumple los requisitos, puede pedir el bono social a una comercializadora de referencia.",  # noqa: E501
        )
        disclosure.full_clean()
        disclosure.save()

    def issue_statements(self, homes: list[DemoHome]) -> None:
        now = timezone.now()
        month = add_months(first_of_month(local_date(now, TIMEZONE)), -1)
        tally = issue_households([home.household.pk for home in homes], month, now=now)
        self.stdout.write(
            f"Statements for {month:%B %Y}: {tally['issued']} issued, {tally['already_issued']} already issued."
        )
        if not self.late_readings:
            return
        demo = homes[0]
        items = [(n, ReadingIn(timestamp=at, energy_kwh=kwh)) for n, (at, kwh) in enumerate(self.late_readings)]
        outcome = ingest_readings(demo.meter.pk, items, now)
        note = corrections.correct(demo.household.pk, month, now=now)
        if note is None:
            self.stdout.write(f"The late readings of {demo.meter.serial} changed nothing a statement shows.")
            return
        self.stdout.write(
            f"{demo.meter.serial} uploaded {outcome.accepted} readings it buffered over {month:%B}'s end: "
            f"{note.title.lower()} {note.code} of {format_money(note.total_eur, note.currency)} "
            f"to {note.corrects.code}."
        )


@contextmanager
def quiet(*names: str) -> Iterator[None]:
    """Only errors from these loggers for a while (the demo's console), whatever LOG_LEVEL says."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
