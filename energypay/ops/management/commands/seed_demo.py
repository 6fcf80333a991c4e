from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from energypay.accounts.models import User
from energypay.accounts.otp import APP_DEVICE_NAME, new_recovery_codes, secret_text
from lib.money import eur_to_satoshis
from lib.periods import HOUR, floor_hour
from meters.demo import DemoHome, SeedMeters
from payments import runs
from payments.broadcast import refresh_pending
from payments.figures import line_amount
from payments.models import PriceQuote, Settlement, Utxo
from payments.wallets import open_wallet

DAYS_AHEAD_EUR = Decimal("15")  # what a funded wallet holds beyond its history: about a week of electricity
SETTLED_HOURS = 48


class Command(SeedMeters):
    help = "Create or top up demo data: tariffs, logins, households, meters, readings, funded wallets, settlements."

    def handle(self, *args, **options) -> None:
        """Steps, each safe to repeat: the meters' demo data, then
        5. a wallet per household, funded from the local faucet (all but the last: it shows arrears);
        6. the last SETTLED_HOURS hours settled hour by hour, as beat would have, with blocks mined.
        """
        super().handle(*args, **options)
        homes = self.homes
        if settings.BSV_NETWORK != "local":
            self.stdout.write(f"BSV_NETWORK={settings.BSV_NETWORK}: wallets opened; fund them and run settle.")
            for home in homes:
                open_wallet(home.household)
            self.print_staff_second_factor()
            return
        # Hundreds of per-settlement log lines would bury the summary.
        payments_log = logging.getLogger("payments")
        level = payments_log.level
        payments_log.setLevel(logging.ERROR)
        try:
            self.fund_wallets(homes)
            self.settle_history(homes)
        finally:
            payments_log.setLevel(level)
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

    def print_staff_second_factor(self) -> None:
        self.stdout.write(
            f"Staff second factor (admin, after the password): any one of the recovery codes "
            f"{' '.join(self.staff_codes)} (each works once; a rerun prints new ones), or add the key "
            f"{secret_text(self.staff_app)} (TOTP, 6 digits, 30 s) to an authenticator app."
        )

    def create_households(self, count, tariffs) -> list[DemoHome]:
        self.homes = super().create_households(count, tariffs)
        return self.homes

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
        tally: dict[str, int] = {}
        for hours_ago in range(SETTLED_HOURS, -1, -1):
            period_end = last_end - hours_ago * HOUR
            PriceQuote.objects.get_or_create(
                source="fixed", fetched_at=period_end, defaults={"bsv_eur": settings.BSV_EUR_PRICE}
            )
            for status, count in runs.settle_households(ids, period_end, now=period_end + timedelta(minutes=5)).items():
                tally[status] = tally.get(status, 0) + count
            if hours_ago % 6 == 0:
                ledger.mine()
        # As the watcher would have: what a block holds is confirmed (the pages show final states).
        confirmed = refresh_pending(Settlement, ledger)
        summary = ", ".join(f"{count} {status}" for status, count in sorted(tally.items()))
        self.stdout.write(f"Settled the last {SETTLED_HOURS} hours one by one: {summary}; {confirmed} confirmed.")
