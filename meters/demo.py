"""Demo data for meters: tariffs, logins, households, meters and readings.

The ``seed_demo`` command (energypay/ops/management/commands/seed_demo.py) builds on this class and
adds wallets, settled history and the staff login's second factor, since meters cannot depend on
payments or on the accounts of the top floor (it reaches the user model through get_user_model()).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from stdnum.es import cups as stdnum_cups
from stdnum.es import dni

from lib.periods import floor_hour
from meters.contracts import set_contracted_power, start_contract
from meters.ingest import ingest_readings
from meters.load_profile import LoadProfile, floor_slot
from meters.models import HourlyUsage, Household, Meter, Region, StandingMark, Tariff, TariffVersion, TaxRule
from meters.schema import parse_items
from meters.standing import accrue_standing_charges
from meters.taxes import first_open_day

DEMO_PASSWORD = "demo"  # noqa: S105 (the documented demo login)
STAFF_EMAIL = "staff@example.com"
TIMEZONE = "Europe/Madrid"
BATCH = 1000  # the ingest API's limit per request
FLAT_TARIFF = "Demo flat"
TOU_TARIFF = "Demo time of use"
TD_TARIFF = "Demo 2.0TD"
# Illustrative 2026 prices of a fixed-price 2.0TD offer, not any retailer's: energy of the order of
# Spanish offers (EUR/kWh), power the regulated tolls and charges of docs/spain.md's worked example
# (EUR/kW/day; the retailer's margin left out).
TD_ENERGY = {"P1": "0.215000", "P2": "0.145000", "P3": "0.105000"}
TD_POWER = {"P1": "0.073777", "P2": "0.001911"}
# The regulated parts of those prices the bill states (network tolls and system charges), illustrative too.
TD_COMPONENTS = {
    "energy_tolls": {"P1": "0.030000", "P2": "0.020000", "P3": "0.003000"},
    "energy_charges": {"P1": "0.040000", "P2": "0.008000", "P3": "0.002000"},
    "power_tolls": {"P1": "0.060000", "P2": "0.001500"},
    "power_charges": {"P1": "0.008000", "P2": "0.000300"},
}
TD_CONTRACTED_KW = {"P1": "4.6", "P2": "4.6"}  # a common domestic power-control switch
METER_RENTAL_PER_DAY = Decimal("0.026630")  # 0.81 EUR per 30 days, the usual rented smart meter
# The kinds of ledger line the Spanish taxes apply to (meter rental: VAT only).
IEE_KINDS = ["energy", "standing", "power"]
VAT_KINDS = ["energy", "standing", "power", "rental"]
# Spain's 2.0TD periods on weekdays; weekends are off-peak all day.
TOU_BANDS = [
    {"days": [0, 1, 2, 3, 4], "start": 0, "end": 8, "rate": "0.130000"},
    {"days": [0, 1, 2, 3, 4], "start": 8, "end": 10, "rate": "0.200000"},
    {"days": [0, 1, 2, 3, 4], "start": 10, "end": 14, "rate": "0.320000"},
    {"days": [0, 1, 2, 3, 4], "start": 14, "end": 18, "rate": "0.200000"},
    {"days": [0, 1, 2, 3, 4], "start": 18, "end": 22, "rate": "0.320000"},
    {"days": [0, 1, 2, 3, 4], "start": 22, "end": 24, "rate": "0.200000"},
    {"days": [5, 6], "start": 0, "end": 24, "rate": "0.130000"},
]
_HOMES = [
    ("Casa García", "Calle de Atocha 27, 3º B, 28012 Madrid"),
    ("Piso Martínez", "Calle de Alcalá 154, 5º A, 28028 Madrid"),
    ("Familia López", "Paseo de las Delicias 61, 1º D, 28045 Madrid"),
    ("Casa Sánchez", "Calle de Bravo Murillo 210, 2º C, 28020 Madrid"),
    ("Ático Fernández", "Calle de Fuencarral 98, 6º, 28004 Madrid"),
    ("Familia Romero", "Avenida de la Albufera 33, 4º A, 28038 Madrid"),
    ("Piso Navarro", "Calle de Embajadores 120, 2º B, 28045 Madrid"),
    ("Casa Ruiz", "Calle del Arroyo del Olivar 14, Bajo, 28018 Madrid"),
]


@dataclass
class DemoHome:
    index: int  # 1 for demo@example.com; also seeds the household's load profile
    household: Household
    meter: Meter
    created: bool


def demo_email(index: int) -> str:
    return "demo@example.com" if index == 1 else f"demo{index}@example.com"


def demo_serial(index: int) -> str:
    return f"DEMO-{index:04d}"


def demo_tax_id(index: int) -> str:
    """A made-up DNI with the right control letter: 12345678Z for the demo login, then 12345679S, ..."""
    number = f"{12345677 + index:08d}"
    return number + dni.calc_check_digit(number)


def demo_cups(index: int) -> str:
    """A made-up CUPS of distributor 0021 with the right control letters: ES0021000000000001RK, ..."""
    number = f"ES0021{index:012d}"
    return number + stdnum_cups.calc_check_digits(number)


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


class SeedMeters(BaseCommand):
    help = "Create or top up demo tariffs, users, households, meters and their reading history."
    default_days = 30

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--households", type=int, default=5, help="How many demo households (default 5).")
        parser.add_argument(
            "--days",
            type=int,
            default=self.default_days,
            help=f"Days of reading history for new meters ({self.default_days}).",
        )

    def handle(self, *args, households: int, days: int, **options) -> None:
        """Steps, each safe to repeat (a rerun tops up, never duplicates):
        1. the flat, time-of-use and 2.0TD demo tariffs, and the peninsula's electricity tax and VAT;
        2. the staff user;
        3. household users, households and their meters (installed when the history starts), and their
           contracts from the history's first hour (the demo login's with its contracted power), with the
           fixed charges of the hours before the standing job's mark;
        4. 15-minute readings through the ingest pipeline, from each meter's last reading up to now, then
           the standing job's hours since its mark, as beat would run it.
        """
        if households < 1 or days < 1:
            raise CommandError("--households and --days must be at least 1.")
        started = time.monotonic()
        now = timezone.now()
        history_start = floor_slot(now) - timedelta(days=days)
        tariffs = self.create_tariffs(valid_from=history_start)
        self.create_taxes(valid_from=history_start)
        self.create_staff()
        homes = self.create_households(households, tariffs)
        self.start_contracts(homes, history_start, now)
        added = sum(self.add_readings(home, now, history_start) for home in homes)
        # The fixed charges of the hours since the job's mark, as beat's next run would write them: the
        # history seed_demo then settles pays them too.
        accrue_standing_charges(now)
        self.print_summary(homes, added, time.monotonic() - started)

    def start_contracts(self, homes: list[DemoHome], history_start: datetime, now: datetime) -> None:
        """The new households' contracts, from the history's first hour; the demo login's with its contracted power.

        Their fixed charges (standing charge, power term, meter rental) up to the hourly job's mark
        (meters/standing.py) are written with them, the job writes the hours after it. A database
        without the mark (emptied by ``flush``, as a transactional test does) gets it first, at this
        hour, as the job's first run would set it: else the contracts would write nothing and the job
        would start from now, leaving the history's power term and rental unbilled.
        """
        StandingMark.objects.get_or_create(pk=1, defaults={"accrued_until": floor_hour(now)})
        # A new demo meter was installed when its history starts (the history is fed as staff would: trusted);
        # set first, since its rental accrues from then (a new meter's default is the backfill window ago).
        new_meters = [home.meter.pk for home in homes if home.meter.last_reading_at is None]
        Meter.objects.filter(pk__in=new_meters).update(installed_at=history_start)
        for home in homes:
            home.meter.refresh_from_db()
            if home.household.tariff_since is not None:
                continue
            start_contract(home.household.pk, floor_hour(history_start))
            if home.household.tariff.name == TD_TARIFF:
                set_contracted_power(home.household.pk, TD_CONTRACTED_KW, floor_hour(history_start), now=now)

    @cached_property
    def password_hash(self) -> str:
        # Hashing is slow on purpose (PBKDF2) and every demo user has the same password: hash it once.
        return make_password(DEMO_PASSWORD)

    def create_tariffs(self, valid_from: datetime) -> list[Tariff]:
        """The flat, time-of-use and 2.0TD tariffs, each with one version in force since well before the history."""
        # A version, once created, is left alone: it prices stored hours forever.
        start = min(datetime(2020, 1, 1, tzinfo=UTC), valid_from.replace(month=1, day=1, hour=0, minute=0))
        flat = self._tariff(
            FLAT_TARIFF,
            "Demo: one price at any hour.",
            TariffVersion(
                valid_from=start,
                kind=TariffVersion.Kind.FLAT,
                flat_rate=Decimal("0.240000"),
                standing_charge_per_day=Decimal("0.350000"),
            ),
        )
        tou = self._tariff(
            TOU_TARIFF,
            "Demo: peak 10-14 and 18-22, mid 8-10, 14-18 and 22-24 on weekdays; off-peak nights and weekends.",
            TariffVersion(
                valid_from=start,
                kind=TariffVersion.Kind.TIME_OF_USE,
                bands=TOU_BANDS,
                standing_charge_per_day=Decimal("0.320000"),
            ),
        )
        td = self._tariff(
            TD_TARIFF,
            "Demo: Spain's 2.0TD access tariff, energy priced by period (P1, P2, P3) and a power term per kW.",
            TariffVersion(
                valid_from=start,
                kind=TariffVersion.Kind.PERIODS,
                calendar="2.0TD",
                period_rates=TD_ENERGY,
                power_rates=TD_POWER,
                **TD_COMPONENTS,
                standing_charge_per_day=Decimal("0"),
            ),
        )
        return [flat, tou, td]

    def create_taxes(self, valid_from: datetime) -> None:
        """The electricity tax and VAT of the peninsula (docs/billing.md, docs/spain.md), from before the history on.

        The electricity tax is on energy, the standing charge and the power term, not on meter rental;
        VAT is on all of them and on the electricity tax (compound).

        Demo figures: the standard rates, without the temporary cuts a year may have had. A ledger
        priced before taxes existed keeps its hours untaxed: the rules then start on the first day
        that has not begun.
        """
        start = min(datetime(2020, 1, 1, tzinfo=UTC), valid_from).date()
        if HourlyUsage.objects.exists():
            start = first_open_day(timezone.now()) or start
        # The electricity tax's base is the energy and the power term (the standing charge of the
        # tariffs without one), never the meter rental; VAT is on all of them and on the electricity
        # tax (docs/spain.md, "Taxes").
        for tax, name, rate, compound, kinds in [
            ("iee", "Impuesto especial sobre la electricidad", Decimal("0.0511269632"), False, IEE_KINDS),
            ("iva", "IVA 21%", Decimal("0.21"), True, VAT_KINDS),
        ]:
            if not TaxRule.objects.filter(tax=tax, region=Region.PENINSULA).exists():
                rule = TaxRule(
                    tax=tax,
                    name=name,
                    rate=rate,
                    kinds=kinds,
                    compound=compound,
                    region=Region.PENINSULA,
                    valid_from=start,
                )
                rule.full_clean()
                rule.save()

    def _tariff(self, name: str, description: str, version: TariffVersion) -> Tariff:
        tariff, _ = Tariff.objects.get_or_create(name=name, defaults={"description": description})
        if not tariff.versions.exists():
            version.tariff = tariff
            version.full_clean()
            version.save()
        return tariff

    def create_staff(self) -> AbstractBaseUser:
        staff, _ = get_user_model().objects.get_or_create(
            email=STAFF_EMAIL,
            defaults={
                "password": self.password_hash,
                "full_name": "Utility staff",
                "is_staff": True,
                "is_superuser": True,
            },
        )
        return staff

    def create_households(self, count: int, tariffs: list[Tariff]) -> list[DemoHome]:
        """Households 1..count with a user and one meter each, a NIF and a CUPS; the first is demo@example.com.

        The demo login is on 2.0TD (``tariffs[2]``) with a rented meter; of the others, odd ones are on
        time of use (a price curve) and even ones flat.
        """
        homes = []
        for index in range(1, count + 1):
            name, address = self._home(index)
            user, _ = get_user_model().objects.get_or_create(
                email=demo_email(index), defaults={"password": self.password_hash, "full_name": name}
            )
            household, created = Household.objects.get_or_create(
                user=user,
                defaults={
                    "name": name,
                    "address": address,
                    "timezone": TIMEZONE,
                    "tariff": tariffs[2] if index == 1 else tariffs[index % 2],
                    "tax_id": demo_tax_id(index),
                    "cups": demo_cups(index),
                },
            )
            rental = METER_RENTAL_PER_DAY if index == 1 else Decimal("0")
            meter, _ = Meter.objects.get_or_create(
                serial=demo_serial(index), defaults={"household": household, "rental_per_day": rental}
            )
            homes.append(DemoHome(index, household, meter, created))
        return homes

    def _home(self, index: int) -> tuple[str, str]:
        name, address = _HOMES[(index - 1) % len(_HOMES)]
        if index > len(_HOMES):
            name = f"{name} {index}"
        return name, address

    def readings_for(self, home: DemoHome, now: datetime, history_start: datetime) -> list[tuple[datetime, Decimal]]:
        """The meter's readings still missing up to now: its whole history, or what follows its last reading."""
        meter = home.meter
        profile = LoadProfile(home.index, home.household.timezone)
        if meter.last_reading_at is None:
            first = (history_start, profile.start_register)
            return [first, *profile.readings(history_start, profile.start_register, now)]
        return profile.readings(meter.last_reading_at, meter.last_register_kwh, now)

    def add_readings(self, home: DemoHome, now: datetime, history_start: datetime) -> int:
        """Feed the missing readings through ingest in batches, as a meter catching up would."""
        readings = self.readings_for(home, now, history_start)
        added = 0
        for first in range(0, len(readings), BATCH):
            batch = readings[first : first + BATCH]
            items = [{"timestamp": f"{at:%Y-%m-%dT%H:%M:%SZ}", "energy_kwh": str(kwh)} for at, kwh in batch]
            valid, rejected = parse_items(items)
            outcome = ingest_readings(home.meter.pk, valid, now)
            rejected += outcome.rejected
            if rejected:
                raise CommandError(f"Meter {home.meter.serial}: ingest refused a demo reading: {rejected[0]}")
            added += outcome.accepted
        return added

    def print_summary(self, homes: list[DemoHome], added: int, seconds: float) -> None:
        new = sum(home.created for home in homes)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data: {_count(len(homes), 'household')} ({new} new), {_count(len(homes), 'meter')}, "
                f"{_count(added, 'reading')} added in {seconds:.1f} s."
            )
        )
        self.stdout.write(
            f"Household login: {demo_email(1)} / {DEMO_PASSWORD} (then demo2@example.com, ...); "
            f"staff: {STAFF_EMAIL} / {DEMO_PASSWORD} at /admin/."
        )
