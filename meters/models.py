"""Households, meters, tariffs and tax rules, readings and the hourly usage ledger.

Lock order, for every writer: the standing-charge mark (``StandingMark``, only the accrual job and
a contract's start take it), the Meter row (``select_for_update``), then the Household row (a
ledger writer raising ``usage_version``, a tariff change), then its usage rows.
Ingest holds the meter lock while it adds readings and recomputes usage; settlement takes the
meter locks of a household before it marks usage as settled, so neither sees half of the other.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from lib.periods import floor_hour, timezone_names
from meters.bands import parse_bands
from meters.calendars import CALENDAR_CHOICES, CALENDARS, get_calendar, parse_period_rates
from meters.identities import compact_cups, compact_tax_id, validate_cups, validate_tax_id

TOKEN_PREFIX = "mtr_"  # noqa: S105 (a prefix, not a secret)


def validate_timezone(value: str) -> None:
    if value not in timezone_names():
        raise ValidationError(f"{value!r} is not an IANA time zone (for example Europe/Madrid).")


def default_installed_at() -> datetime:
    """A meter registered now may have been installed up to the backfill window ago; staff set the real day."""
    return timezone.now() - timedelta(days=settings.INGEST_BACKFILL_DAYS)


def hash_token(token: str) -> str:
    # Tokens are 256 random bits, so a fast hash is enough: nothing to brute-force, and
    # ingest looks the hash up on every request.
    return hashlib.sha256(token.encode()).hexdigest()


class Tariff(models.Model):
    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    # Changes whenever one of its versions or their hour prices do: ingest caches versions per
    # process under it, and the usage chart's cache key carries it (the day's price curve).
    revision = models.UUIDField(default=uuid.uuid4, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TariffVersion(models.Model):
    """What a tariff charges from ``valid_from`` on; the version in force at an hour prices it forever."""

    class Kind(models.TextChoices):
        FLAT = "flat", "Flat rate"
        TIME_OF_USE = "tou", "Time of use"
        DYNAMIC = "dynamic", "Dynamic hourly prices"
        PERIODS = "periods", "Periods on a calendar (2.0TD)"

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    valid_from = models.DateTimeField(help_text="On the hour. Prices every hour from here until the next version.")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FLAT)
    flat_rate = models.DecimalField(
        "flat rate (EUR/kWh)",
        max_digits=9,
        decimal_places=6,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
    )
    bands = models.JSONField(
        default=list,
        blank=True,
        help_text="Time-of-use bands in local time, Monday=0: "
        '[{"days": [0,1,2,3,4], "start": 8, "end": 22, "rate": "0.30"}, ...]. '
        "Together they must cover every hour of every weekday exactly once.",
    )
    calendar = models.CharField(
        max_length=20,
        choices=CALENDAR_CHOICES,
        blank=True,
        help_text="For periods: the calendar that says which period (P1, P2, P3) each local hour is in.",
    )
    period_rates = models.JSONField(
        "energy price per period (EUR/kWh)",
        default=dict,
        blank=True,
        help_text='For periods: a price for every energy period of the calendar, {"P1": "0.25", "P2": "0.18", '
        '"P3": "0.12"}.',
    )
    power_rates = models.JSONField(
        "power price per period (EUR/kW/day)",
        default=dict,
        blank=True,
        help_text='Optional, for periods: a price for every power period of the calendar, {"P1": "0.073777", '
        '"P2": "0.001911"}. When given, the power term (contracted kW x price, every day) is charged and '
        "replaces the standing charge.",
    )
    # The regulated parts of each price, for the bill (issue 18 item 7; docs/spain.md): the network tolls
    # (peajes, CNMC) and the system charges (cargos, Ministry) inside each energy and power price, staff-entered.
    # Optional; they never price anything, only say what part of a price they are.
    energy_tolls = models.JSONField(
        "network tolls in each energy price (EUR/kWh)",
        default=dict,
        blank=True,
        help_text='Optional, for periods: the peajes part of each energy price, {"P1": "0.029098", ...}.',
    )
    energy_charges = models.JSONField(
        "system charges in each energy price (EUR/kWh)",
        default=dict,
        blank=True,
        help_text='Optional, for periods: the cargos part of each energy price, {"P1": "0.043893", ...}.',
    )
    power_tolls = models.JSONField(
        "network tolls in each power price (EUR/kW/day)",
        default=dict,
        blank=True,
        help_text='Optional, with power prices: the peajes part of each power price, {"P1": "0.063851", ...}.',
    )
    power_charges = models.JSONField(
        "system charges in each power price (EUR/kW/day)",
        default=dict,
        blank=True,
        help_text='Optional, with power prices: the cargos part of each power price, {"P1": "0.008529", ...}.',
    )
    standing_charge_per_day = models.DecimalField(
        "standing charge (EUR/day)",
        max_digits=9,
        decimal_places=6,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tariff", "-valid_from"]
        constraints = [models.UniqueConstraint(fields=["tariff", "valid_from"], name="tariff_version_unique_start")]

    def __str__(self) -> str:
        return f"{self.tariff} from {self.valid_from:%Y-%m-%d %H:%M} UTC ({self.get_kind_display()})"

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        self.new_tariff_revision()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        self.new_tariff_revision()
        return result

    def new_tariff_revision(self) -> None:
        """Say the tariff's prices changed: this version was saved or deleted, or hour prices imported.

        Ingest's cache of versions and the usage chart's cache (its price curve) are keyed on it.
        """
        revision = uuid.uuid4()
        Tariff.objects.filter(pk=self.tariff_id).update(revision=revision)
        if TariffVersion.tariff.is_cached(self):
            self.tariff.revision = revision

    def clean(self) -> None:
        if self.valid_from and floor_hour(self.valid_from) != self.valid_from:
            raise ValidationError({"valid_from": "A tariff version must start on the hour."})
        if self.kind == self.Kind.FLAT and self.flat_rate is None:
            raise ValidationError({"flat_rate": "A flat tariff needs a rate."})
        if self.kind == self.Kind.TIME_OF_USE:
            try:
                parse_bands(self.bands)
            except ValueError as error:
                raise ValidationError({"bands": str(error)}) from None
        errors = {}
        if self.kind == self.Kind.PERIODS:
            if not self.calendar:
                errors["calendar"] = "A tariff priced by periods needs a calendar."
            elif self.calendar in CALENDARS:  # an unknown one is refused by the field's choices
                calendar = CALENDARS[self.calendar]
                try:
                    parse_period_rates(self.period_rates, calendar.energy_periods, "EUR/kWh")
                except ValueError as error:
                    errors["period_rates"] = str(error)
                if self.power_rates:
                    try:
                        parse_period_rates(self.power_rates, calendar.power_periods, "EUR/kW/day")
                    except ValueError as error:
                        errors["power_rates"] = str(error)
                    if self.standing_charge_per_day:
                        errors["standing_charge_per_day"] = (
                            "The power term replaces the standing charge: leave it at 0 when power prices are given."
                        )
            if self.calendar in CALENDARS and "period_rates" not in errors and "power_rates" not in errors:
                errors.update(self._component_errors())
        else:
            for name in ("calendar", "period_rates", "power_rates", *self.COMPONENTS):
                if getattr(self, name):
                    errors[name] = "Only a tariff priced by periods on a calendar uses this."
        if errors:
            raise ValidationError(errors)

    COMPONENTS = ("energy_tolls", "energy_charges", "power_tolls", "power_charges")

    def _component_errors(self) -> dict[str, str]:
        """Tolls and charges: a figure for every period or none, each at most its price, and the two together too."""
        calendar = CALENDARS[self.calendar]
        errors: dict[str, str] = {}
        for side, periods, unit, prices_raw in (
            ("energy", calendar.energy_periods, "EUR/kWh", self.period_rates),
            ("power", calendar.power_periods, "EUR/kW/day", self.power_rates),
        ):
            parts = {}
            for part in ("tolls", "charges"):
                name = f"{side}_{part}"
                raw = getattr(self, name)
                if not raw:
                    continue
                if side == "power" and not self.power_rates:
                    errors[name] = "Tolls and charges of the power price need power prices."
                    continue
                try:
                    parts[part] = parse_period_rates(raw, periods, unit)
                except ValueError as error:
                    errors[name] = str(error)
            if not parts or any(f"{side}_{part}" in errors for part in ("tolls", "charges")):
                continue
            prices = parse_period_rates(prices_raw, periods, unit)
            for part, values in parts.items():
                above = [p for p in periods if values[p] > prices[p]]
                if above:
                    errors[f"{side}_{part}"] = (
                        "; ".join(f"{p}: {values[p]} is more than the price {prices[p]} {unit}" for p in above)
                        + ". A part of a price cannot exceed it."
                    )
            if len(parts) == 2 and not errors:
                above = [p for p in periods if parts["tolls"][p] + parts["charges"][p] > prices[p]]
                if above:
                    errors[f"{side}_charges"] = (
                        "; ".join(
                            f"{p}: tolls {parts['tolls'][p]} + charges {parts['charges'][p]} are more than the price "
                            f"{prices[p]} {unit}"
                            for p in above
                        )
                        + "."
                    )
        return errors

    def components(self) -> dict[str, dict[str, Decimal]] | None:
        """The four parts (energy/power tolls and charges) per period, or None unless all the version needs are given:
        the energy's tolls and charges, and the power's when it has a power term."""
        if self.kind != self.Kind.PERIODS or not (self.energy_tolls and self.energy_charges):
            return None
        if self.has_power_term and not (self.power_tolls and self.power_charges):
            return None
        calendar = get_calendar(self.calendar)
        result = {
            "energy_tolls": parse_period_rates(self.energy_tolls, calendar.energy_periods, "EUR/kWh"),
            "energy_charges": parse_period_rates(self.energy_charges, calendar.energy_periods, "EUR/kWh"),
        }
        if self.has_power_term:
            result["power_tolls"] = parse_period_rates(self.power_tolls, calendar.power_periods, "EUR/kW/day")
            result["power_charges"] = parse_period_rates(self.power_charges, calendar.power_periods, "EUR/kW/day")
        return result

    @property
    def has_power_term(self) -> bool:
        return self.kind == self.Kind.PERIODS and bool(self.power_rates)

    def energy_prices(self) -> dict[str, Decimal]:
        return parse_period_rates(self.period_rates, get_calendar(self.calendar).energy_periods, "EUR/kWh")

    def power_prices(self) -> dict[str, Decimal]:
        """EUR/kW/day per power period; empty when the version has no power term."""
        if not self.has_power_term:
            return {}
        return parse_period_rates(self.power_rates, get_calendar(self.calendar).power_periods, "EUR/kW/day")


class DynamicPrice(models.Model):
    """One hour's price of a dynamic tariff version, imported by staff from CSV."""

    version = models.ForeignKey(TariffVersion, on_delete=models.CASCADE, related_name="prices")
    hour_start = models.DateTimeField()
    rate = models.DecimalField(
        "rate (EUR/kWh)", max_digits=9, decimal_places=6, validators=[MinValueValidator(Decimal("0"))]
    )

    class Meta:
        ordering = ["version", "hour_start"]
        constraints = [models.UniqueConstraint(fields=["version", "hour_start"], name="dynamic_price_unique_hour")]

    def __str__(self) -> str:
        return f"{self.hour_start:%Y-%m-%d %H:%M} UTC: {self.rate} EUR/kWh"


class Region(models.TextChoices):
    """Where a supply is, for its taxes: the Canary Islands levy IGIC and Ceuta and Melilla IPSI, not VAT."""

    PENINSULA = "peninsula", "Peninsula and Balearic Islands"
    CANARIAS = "canarias", "Canary Islands"
    CEUTA_MELILLA = "ceuta_melilla", "Ceuta and Melilla"


class Household(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="household")
    # The account holder's name and the supply address (the statement's customer).
    name = models.CharField(max_length=150)
    address = models.TextField(blank=True)
    tax_id = models.CharField(
        "tax ID (NIF/NIE/DNI)",
        max_length=20,
        blank=True,
        validators=[validate_tax_id],
        help_text="The account holder's Spanish tax ID: a DNI or NIF (12345678Z, B12345674) or an NIE "
        "(X1234567L), with its control character.",
    )
    cups = models.CharField(
        "CUPS",
        max_length=30,
        blank=True,
        validators=[validate_cups],
        help_text="The supply point code: ES, 16 digits, two control letters, optionally two more characters "
        "(ES0021000000000001JN).",
    )
    timezone = models.CharField(
        max_length=64,
        default="Europe/Madrid",
        validators=[validate_timezone],
        help_text="Decides the household's days (standing charge, tax dates); fixed once it has been billed.",
    )
    region = models.CharField(
        "tax region",
        max_length=20,
        choices=Region.choices,
        default=Region.PENINSULA,
        help_text="Decides which tax rules apply; fixed once the household has been billed.",
    )
    # The tariff in force now. Under contract (tariff_since set), it is kept in step with the
    # household's TariffAssignments by meters/contracts.py, the only writer: it prices every hour in
    # [tariff_since, tariff_until), so ingest prices the usual hour with no query for assignments,
    # and save() never writes these three (a form loaded before a tariff change must not undo it).
    # A household without a contract (made in code) is on this tariff for every hour.
    # The language of the household's pages, mails and statements; the switch in the page sets it.
    language = models.CharField(
        max_length=10,
        choices=settings.LANGUAGES,
        default=settings.LANGUAGE_CODE,
        help_text="Pages, mails and new statements are in this language.",
    )
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="households")
    tariff_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Start of the current tariff; none: no contract recorded."
    )
    tariff_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Start of the next planned tariff change, if any."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once, by meters/contracts.py close_account: from this hour on nothing is billed or settled
    # (its meters are switched off, no standing charge accrues, no statement covers a later month).
    closed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="The account closed at this hour (UTC): nothing billed after."
    )
    # Goes up in the transaction of every write to the household's hourly ledger (meters/usage.py):
    # the usage chart's cache key, so a cached chart never outlives the money it shows.
    usage_version = models.PositiveBigIntegerField(default=0, editable=False)

    # Written only by their own functions, never by a form's save() (see save()).
    OWN_WRITERS = frozenset({"usage_version", "closed_at"})
    CONTRACT_FIELDS = frozenset({"tariff", "tariff_since", "tariff_until"})

    class Meta:
        ordering = ["name"]
        indexes = [
            # The hourly job that moves households onto a planned tariff finds them through this.
            models.Index(fields=["tariff_until"], condition=Q(tariff_until__isnull=False), name="household_tariff_due"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # Only meters/usage.py's UPDATE raises the version, and only meters/contracts.py changes the
        # tariff. A household loaded before such a write and saved after it (the admin's form) must
        # not put the older values back: the chart cached under the older version would be served
        # again, and a planned tariff change would be forgotten.
        if not self._state.adding and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            skipped = self.OWN_WRITERS | (self.CONTRACT_FIELDS if self.tariff_since is not None else frozenset())
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in skipped
            ]
        super().save(*args, **kwargs)

    def clean(self) -> None:
        # Stored as the statement prints them (the validators accepted spaces, dashes and lower case).
        self.tax_id = compact_tax_id(self.tax_id) if self.tax_id else ""
        self.cups = compact_cups(self.cups) if self.cups else ""
        if self.pk is None:
            return
        stored = Household.objects.filter(pk=self.pk).values("timezone", "region").first()
        changed = [name for name in ("timezone", "region") if stored and stored[name] != getattr(self, name)]
        if changed and HourlyUsage.objects.filter(household_id=self.pk).exists():
            # Its billed hours keep the days and the taxes they were priced with: statements and
            # the tax breakdown read them again later (meters/taxes.py).
            raise ValidationError(
                {
                    name: "The household has been billed: its hours keep the time zone and tax region they were "
                    "priced in. Open a new household for a supply that moves."
                    for name in changed
                }
            )


class TariffAssignment(models.Model):
    """The tariff a household is on from ``valid_from`` (on the hour, UTC) until its next assignment.

    The household's first assignment starts its contract: the standing charge accrues from then on,
    every hour, with or without readings. An assignment prices its hours forever, so it is never
    edited; a change that has not begun yet is replaced by assigning again (meters/contracts.py).
    """

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="tariff_assignments")
    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="assignments")
    valid_from = models.DateTimeField(help_text="On the hour (UTC). Prices every hour from here to the next change.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["household", "valid_from"]
        constraints = [
            models.UniqueConstraint(fields=["household", "valid_from"], name="tariff_assignment_unique_start"),
        ]

    def __str__(self) -> str:
        return f"{self.household}: {self.tariff} from {self.valid_from:%Y-%m-%d %H:%M} UTC"


POWER_PERIOD_NAMES = tuple(f"P{n}" for n in range(1, 7))
MAX_KW = Decimal("99999.999")


def parse_kilowatts(raw: object) -> dict[str, Decimal]:
    """Contracted kW per power period as staff type them ({"P1": "4.6", "P2": "4.6"}), or ValueError."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError('Give the contracted kW of each power period: {"P1": "4.6", "P2": "4.6"}.')
    kw = {}
    for period, value in raw.items():
        if period not in POWER_PERIOD_NAMES:
            raise ValueError(f"{period} is not a power period (P1 to P6).")
        try:
            amount = Decimal(str(value)) if not isinstance(value, bool) else None
        except ArithmeticError:
            amount = None
        if (
            amount is None
            or not amount.is_finite()
            or not (0 < amount <= MAX_KW)
            or amount != amount.quantize(Decimal("0.001"))
        ):
            raise ValueError(f"{period}: kW must be a number above 0, up to {MAX_KW}, with at most 3 decimals.")
        kw[period] = amount
    return kw


class ContractedPower(models.Model):
    """The power a household has contracted per power period (kW), from ``valid_from`` until the next row.

    Effective-dated like ``TariffAssignment``: it prices the power term of its hours forever, so it is
    never edited; a change is a new row, from an hour no power line can exist for yet
    (meters/contracts.py ``set_contracted_power``).
    """

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="contracted_powers")
    valid_from = models.DateTimeField(help_text="On the hour (UTC). From here to the next change.")
    kw = models.JSONField(
        "contracted power (kW)", help_text='kW per power period of the tariff\'s calendar: {"P1": "4.6", "P2": "4.6"}.'
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["household", "valid_from"]
        verbose_name = "contracted power"
        constraints = [
            models.UniqueConstraint(fields=["household", "valid_from"], name="contracted_power_unique_start"),
        ]

    def __str__(self) -> str:
        powers = ", ".join(f"{period} {value} kW" for period, value in self.kilowatts().items())
        return f"{self.household}: {powers} from {self.valid_from:%Y-%m-%d %H:%M} UTC"

    def kilowatts(self) -> dict[str, Decimal]:
        return parse_kilowatts(self.kw)

    def clean(self) -> None:
        try:
            self.kw = {period: str(value) for period, value in parse_kilowatts(self.kw).items()}
        except ValueError as error:
            raise ValidationError({"kw": str(error)}) from None
        if self.valid_from and floor_hour(self.valid_from) != self.valid_from:
            raise ValidationError({"valid_from": "Contracted power changes on the hour."})


class StandingMark(models.Model):
    """How far the hourly job has accrued every contract's standing charge: all hours before ``accrued_until``.

    One row. The job claims each hour with a conditional UPDATE of it (meters/standing.py), so
    overlapping runs accrue an hour once; a contract starting earlier accrues its past hours itself.
    """

    accrued_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"standing charges accrued until {self.accrued_until:%Y-%m-%d %H:%M} UTC"


class TaxRule(models.Model):
    """A tax at one rate, on some kinds of ledger line, for some households, over some local days.

    ``tax`` names the tax whatever its rate ("iva", "iee"): rules of one tax that could apply to the
    same line on the same day are refused (meters/taxes.py ``overlapping``). A compound rule's base
    is the line's cost plus the simple (non-compound) taxes on the same line: VAT on the
    electricity tax. A rule may be limited to households whose contracted power is at most
    ``max_contracted_kw``; among the rules of one tax that apply to a line, those with the lowest
    limit win (meters/pricing.py ``pick_rules``). Dates are local calendar days of the household,
    ``valid_to`` included. A rule prices its days forever: the admin refuses any change reaching a
    day that has begun.
    """

    tax = models.SlugField(
        max_length=40, help_text='The tax this is a rate of, whatever the rate: "iva", "iee", "igic".'
    )
    name = models.CharField(
        max_length=120, help_text='As the statement shows it: "IVA 21%", "Impuesto especial sobre la electricidad".'
    )
    rate = models.DecimalField(
        max_digits=11,
        decimal_places=10,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="A fraction, not a percentage: 0.21 for 21%, 0.0511269632 for 5.11269632%.",
    )
    kinds = models.JSONField(
        "applies to", default=list, help_text="The kinds of ledger line it taxes (energy, standing charge, ...)."
    )
    compound = models.BooleanField(
        "base includes other taxes",
        default=False,
        help_text="Its base is the line's cost plus the line's simple taxes, as VAT's base has the electricity tax.",
    )
    region = models.CharField(
        max_length=20,
        choices=Region.choices,
        blank=True,
        help_text="Households of this tax region; blank: every region.",
    )
    tariffs = models.ManyToManyField(
        Tariff, blank=True, related_name="tax_rules", help_text="Households on these tariffs; none: every tariff."
    )
    max_contracted_kw = models.DecimalField(
        "only up to contracted power (kW)",
        max_digits=8,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Only households whose contracted power (the highest of its periods, at the hour) is at most "
        "this; blank: any. Of the rules of one tax that apply, the one with the lowest limit wins: "
        "IVA 10% up to 10 kW beside IVA 21% without a limit.",
    )
    minimum_eur_per_mwh = models.DecimalField(
        "minimum per MWh (EUR)",
        max_digits=8,
        decimal_places=4,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0"))],
        help_text="The electricity tax's floor over a statement period: never less than this x the period's MWh "
        "(1 EUR; 0.5 for industrial uses), and nothing for a period without consumption. Blank: no floor. "
        "Charged on the statement as a line of its own (docs/billing.md).",
    )
    valid_from = models.DateField(help_text="First local day it applies to.")
    valid_to = models.DateField(null=True, blank=True, help_text="Last local day it applies to; blank: until changed.")
    # A rate corrected after its days were billed (meters/tax_corrections.py, never through the admin's form):
    # this rule takes the place of ``replaces`` on its own days, which stay inside that rule's.
    replaces = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="corrections",
        help_text="The rule whose rate this one corrects on its days, after they were billed.",
    )
    correction_reason = models.CharField(max_length=200, blank=True, help_text="Why the rate was corrected.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tax", "region", "valid_from"]
        constraints = [
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gte=models.F("valid_from")),
                name="tax_rule_dates_in_order",
            ),
            models.CheckConstraint(condition=Q(rate__gte=0) & Q(rate__lte=1), name="tax_rule_rate_fraction"),
        ]

    def __str__(self) -> str:
        until = f" to {self.valid_to:%Y-%m-%d}" if self.valid_to else ""
        return f"{self.name} from {self.valid_from:%Y-%m-%d}{until}"

    def save(self, *args, **kwargs) -> None:
        super().save(*args, **kwargs)
        tax_rules_changed()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        tax_rules_changed()
        return result

    def clean(self) -> None:
        errors = {}
        if self.rate is not None and not (Decimal("0") <= self.rate <= Decimal("1")):
            errors["rate"] = "A rate is a fraction between 0 and 1 (0.21 for 21%)."
        kinds = self.kinds if isinstance(self.kinds, list) else None
        taxable = [kind for kind in HourlyUsage.Kind.values if kind != HourlyUsage.Kind.RETAX]
        if not kinds or not set(kinds) <= set(taxable) or len(set(kinds)) != len(kinds):
            errors["kinds"] = f"Choose the kinds of line it taxes among: {', '.join(taxable)}."
        if self.valid_from and self.valid_to and self.valid_to < self.valid_from:
            errors["valid_to"] = "The last day cannot come before the first."
        if self.max_contracted_kw is not None and self.max_contracted_kw <= 0:
            errors["max_contracted_kw"] = "A power limit is more than 0 kW; leave it blank for any power."
        if self.minimum_eur_per_mwh is not None and (self.compound or self.minimum_eur_per_mwh < 0):
            errors["minimum_eur_per_mwh"] = "A minimum per MWh is 0 or more, on a tax whose base has no other tax."
        if errors:
            raise ValidationError(errors)

    def covers(self, day: date) -> bool:
        return self.valid_from <= day and (self.valid_to is None or day <= self.valid_to)

    def admits(self, max_kw: Decimal | None) -> bool:
        """Whether it taxes a household of contracted power ``max_kw`` (None: none recorded)."""
        return self.max_contracted_kw is None or (max_kw is not None and max_kw <= self.max_contracted_kw)


def tax_rules_changed() -> None:
    """Say every tariff's prices changed: tax rules price hours like tariffs do.

    Pricing caches rules per process under a tariff's ``revision`` (meters/pricing.py), read in the
    same query that loads the household's tariff, so a new revision is seen by the next write.
    """
    Tariff.objects.update(revision=uuid.uuid4())


class Meter(models.Model):
    serial = models.CharField(max_length=64, unique=True)
    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="meters")
    token_hash = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    max_power_kw = models.DecimalField(
        "max plausible power (kW)",
        max_digits=8,
        decimal_places=3,
        default=Decimal("30"),
        validators=[MinValueValidator(Decimal("0.001"))],
        help_text="A reading implying more average power than this since its neighbour is rejected.",
    )
    is_active = models.BooleanField(default=True, help_text="An inactive meter's token is refused.")
    rental_per_day = models.DecimalField(
        "meter rental (EUR/day)",
        max_digits=9,
        decimal_places=6,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
        help_text="Charged every day of the household's contract while the meter is active, as a line of its own "
        "(taxed by the rules that name meter rental).",
    )
    installed_at = models.DateTimeField(
        default=default_installed_at,
        help_text="Readings before this are never billed through the meter's token: they are held for review.",
    )
    last_reading_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_register_kwh = models.DecimalField(max_digits=15, decimal_places=3, null=True, blank=True, editable=False)
    # The reading before the latest: ingest needs it to tell a dip at the latest reading (a glitch or
    # a reset) without a query (docs/ingest.md, "Register dips").
    previous_reading_at = models.DateTimeField(null=True, blank=True, editable=False)
    previous_register_kwh = models.DecimalField(max_digits=15, decimal_places=3, null=True, blank=True, editable=False)
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Last accepted request.")
    # The per-meter request budget lives on the row ingest locks anyway: no extra round trip.
    rate_window = models.PositiveBigIntegerField(default=0, editable=False)
    rate_count = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["serial"]

    def __str__(self) -> str:
        return self.serial

    def issue_token(self) -> str:
        """Give the meter a new token and return it; it is shown once, only its hash is kept."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(token)
        self.save(update_fields=["token_hash"])
        return token

    @staticmethod
    def token_hash_of(token: str) -> str | None:
        """The hash a meter's token is stored under, or None for text that cannot be a meter token."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return hash_token(token)

    @classmethod
    def for_token(cls, token: str, *, lock: bool = False) -> Meter | None:
        """The active meter with this token, with its household and tariff; locked if asked (in a transaction)."""
        token_hash = cls.token_hash_of(token)
        if token_hash is None:
            return None
        meters = cls.objects.filter(token_hash=token_hash, is_active=True)
        if lock:
            # OF self: lock the meter only, never the household or the tariff every meter shares.
            meters = meters.select_for_update(of=("self",))
        return meters.select_related("household__tariff").first()

    @classmethod
    def locked(cls, pk: int) -> Meter:
        return cls.objects.select_for_update(of=("self",)).select_related("household__tariff").get(pk=pk)

    def save_contact(self, now, **fields) -> None:
        """Store that the meter was heard from, with its request budget and any other changed fields."""
        self.last_seen_at = now
        Meter.objects.filter(pk=self.pk).update(
            last_seen_at=now, rate_window=self.rate_window, rate_count=self.rate_count, **fields
        )


class Reading(models.Model):
    """A meter's cumulative import register at an instant. Never edited, never deleted."""

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="readings")
    # The meter's household, copied at insert: the distribution key a sharded database (Citus) needs,
    # so no query of a household's readings joins across households. Not indexed: reads go by meter.
    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="+", db_index=False)
    timestamp = models.DateTimeField()
    energy_kwh = models.DecimalField("register (kWh)", max_digits=15, decimal_places=3)
    # When the ingest API received it; empty for readings a trusted caller fed in (seed_demo's history,
    # a held reading staff accepted): the status page's live ingest rate counts only the API's.
    received_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["meter", "timestamp"]
        # The unique index doubles as the (meter, timestamp) index every window query uses.
        constraints = [models.UniqueConstraint(fields=["meter", "timestamp"], name="reading_unique_meter_timestamp")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.timestamp:%Y-%m-%d %H:%M:%S} {self.energy_kwh} kWh"


class MeterEvent(models.Model):
    """Something staff should see about a meter's data: its register went down.

    A reading below the one before it is a reset (a new baseline) unless the reading after it is
    back at or above the register before the dip: then it was a one-off glitch, billed as nothing.
    A later reading can turn one into the other; the event follows (docs/ingest.md).
    """

    class Kind(models.TextChoices):
        RESET = "reset", "Register reset"
        GLITCH = "glitch", "One-off dip (not billed)"

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    timestamp = models.DateTimeField(help_text="Timestamp of the reading the event is about.")
    previous_kwh = models.DecimalField(max_digits=15, decimal_places=3)
    new_kwh = models.DecimalField(max_digits=15, decimal_places=3)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-timestamp"]
        constraints = [models.UniqueConstraint(fields=["meter", "kind", "timestamp"], name="meter_event_unique")]

    def __str__(self) -> str:
        when = f"{self.timestamp:%Y-%m-%d %H:%M} UTC"
        return f"{self.get_kind_display()} at {when}: {self.previous_kwh} -> {self.new_kwh} kWh"


class HourlyUsage(models.Model):
    """A line of the household's bill for one UTC hour.

    Energy lines belong to a meter; standing-charge lines (the hour's share of the daily charge)
    have no meter. ``seq`` 0 is the hour's first line; once a line is settled it never changes, and
    what later readings add to that hour goes into a new line (seq 1, 2, ...) that the next
    settlement pays. So for every (meter, hour) at most one line is open (unsettled).
    ``cost_eur`` is null while the hour has no price (a dynamic tariff without that hour's price).
    """

    class Kind(models.TextChoices):
        # Shown on the household's payment pages, in its language.
        ENERGY = "energy", _("Energy")
        STANDING = "standing", _("Standing charge")
        # The power term of a tariff priced per contracted kW (issue 18), per household like the
        # standing charge it replaces; the meter rental, per meter. Both accrue every day of the
        # contract (meters/standing.py), whether the meters report or not.
        POWER = "power", _("Power term")
        RENTAL = "rental", _("Meter rental")
        # A tax rate corrected after its hours were billed (meters/tax_corrections.py): per household and hour,
        # a pair of lines, the cost given back at the old factor and charged again at the new one. Their
        # costs add up to nothing; their taxes to the difference, which the next settlement pays.
        RETAX = "retax", _("Tax correction")
        # The electricity tax's minimum over a statement period (issue 18, meters/minimum_tax.py): the
        # tax difference as its cost, the VAT on it as its tax; one per household and period, written
        # for the period's last hour when the statement is issued (adjustments: seq 1, 2, ...).
        MINIMUM = "minimum", _("Electricity tax minimum")

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="usage")
    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="usage", null=True, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ENERGY)
    hour_start = models.DateTimeField()
    seq = models.PositiveSmallIntegerField(default=0)
    kwh = models.DecimalField(max_digits=15, decimal_places=6, default=Decimal("0"))
    tariff_version = models.ForeignKey(TariffVersion, on_delete=models.PROTECT, null=True, blank=True)
    rate = models.DecimalField("rate (EUR/kWh)", max_digits=9, decimal_places=6, null=True, blank=True)
    cost_eur = models.DecimalField(max_digits=15, decimal_places=6, null=True, blank=True)
    # The taxes in force for this line's kind at its hour, as one factor on cost_eur (compound taxes
    # multiplied out: VAT on the electricity tax), and what they add: the hour's tax rounded to the
    # micro-euro like its cost, the same way for every line of the hour (docs/billing.md).
    # Rules' rates have 10 decimals, so a compound factor has up to 20: stored exactly.
    tax_rate = models.DecimalField(max_digits=24, decimal_places=20, default=Decimal("0"))
    tax_eur = models.DecimalField(max_digits=15, decimal_places=6, null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["household", "hour_start", "meter", "seq"]
        verbose_name_plural = "hourly usage"
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "hour_start", "seq"], condition=Q(kind="energy"), name="usage_unique_meter_line"
            ),
            models.UniqueConstraint(
                fields=["household", "hour_start", "seq"],
                condition=Q(kind="standing"),
                name="usage_unique_standing_line",
            ),
            models.UniqueConstraint(
                fields=["household", "hour_start", "seq"], condition=Q(kind="power"), name="usage_unique_power_line"
            ),
            models.UniqueConstraint(
                fields=["meter", "hour_start", "seq"], condition=Q(kind="rental"), name="usage_unique_rental_line"
            ),
            models.UniqueConstraint(
                fields=["household", "hour_start", "seq"],
                condition=Q(kind="minimum"),
                name="usage_unique_minimum_line",
            ),
            models.UniqueConstraint(
                fields=["meter", "hour_start"],
                condition=Q(kind="energy", settled_at__isnull=True),
                name="usage_one_open_meter_line",
            ),
            models.UniqueConstraint(
                fields=["household", "hour_start"],
                condition=Q(kind="standing", settled_at__isnull=True),
                name="usage_one_open_standing_line",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["energy", "rental"], meter__isnull=False)
                | Q(kind__in=["standing", "power", "retax", "minimum"], meter__isnull=True),
                name="usage_meter_matches_kind",
            ),
        ]
        indexes = [
            models.Index(fields=["household", "hour_start"], name="usage_household_hour"),
            # Settlement scans only what is still open.
            models.Index(
                fields=["household", "hour_start"], condition=Q(settled_at__isnull=True), name="usage_open_lines"
            ),
        ]

    def __str__(self) -> str:
        what = (self.meter_id and f"meter {self.meter_id}") or "standing charge"
        return f"{self.household_id} {self.hour_start:%Y-%m-%d %H:00} UTC {what} #{self.seq}"


class HeldReading(models.Model):
    """A reading ingest would not bill through the meter's token (too old, or before installation).

    Kept for staff, never lost: accepting it ingests it through the normal path (staff knowingly
    bill it); discarding keeps the row, marked. Who decided what, and when, stays on the row.
    """

    class State(models.TextChoices):
        HELD = "held", "Held for review"
        ACCEPTED = "accepted", "Accepted (billed)"
        DISCARDED = "discarded", "Discarded"

    meter = models.ForeignKey(Meter, on_delete=models.PROTECT, related_name="held_readings")
    timestamp = models.DateTimeField()
    energy_kwh = models.DecimalField("register (kWh)", max_digits=15, decimal_places=3)
    reason = models.CharField(max_length=40, help_text="The rejection code the meter was answered with.")
    received_at = models.DateTimeField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.HELD)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="What the decision did.")

    class Meta:
        ordering = ["meter", "timestamp"]
        # A meter resends until it gets an answer: the same reading is held once.
        constraints = [
            models.UniqueConstraint(fields=["meter", "timestamp", "energy_kwh"], name="held_reading_unique"),
        ]
        indexes = [models.Index(fields=["state", "timestamp"], name="held_reading_state")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.timestamp:%Y-%m-%d %H:%M:%S} {self.energy_kwh} kWh ({self.state})"
