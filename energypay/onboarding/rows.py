"""The onboarding file: its columns, and every row judged before anything is written.

One row per meter, with its household's details; a household with several meters repeats them on
each of its rows (same email: same household), and a household without a meter yet has a row with
no serial. ``read`` judges the whole file at once, so every error of every row shows in one preview:
bad emails and emails already registered, unknown tariffs, bad time zones and tax regions,
duplicate serials (in the file and in the database), numbers and dates that do not parse.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from lib.periods import local_date, timezone_names
from meters.models import Household, Meter, Region, Tariff

REQUIRED = ("email", "name", "timezone", "tariff")
OPTIONAL = ("address", "region", "contract_starts", "serial", "max_power_kw", "installed_at")
COLUMNS = ("email", "name", "address", "timezone", "region", "tariff", "contract_starts", "serial", "max_power_kw",
           "installed_at")  # fmt: skip
# What one household's rows must agree on.
HOUSEHOLD_FIELDS = ("name", "address", "timezone", "region", "tariff", "contract_starts")
# A contract starting further back would write its standing charge for every hour since, in the import.
CONTRACT_PAST_DAYS = 92
FIRST_LINE = 2  # line 1 is the header


class FileRefused(ValueError):
    """The file as a whole cannot be imported (columns, size); the message says why."""


@dataclass
class HouseholdRow:
    email: str
    name: str
    address: str
    timezone: str
    region: str
    tariff: Tariff
    contract_starts: date
    line: int


@dataclass
class MeterRow:
    email: str
    serial: str
    max_power_kw: Decimal | None
    installed_at: datetime | None


@dataclass
class Plan:
    """The file judged: what to create, or the errors per line (line number -> column -> messages)."""

    rows: list[dict[str, str]] = field(default_factory=list)
    households: dict[str, HouseholdRow] = field(default_factory=dict)
    meters: list[MeterRow] = field(default_factory=list)
    errors: dict[int, dict[str, list[str]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def text(value: Any) -> str:
    """A cell as text: CSV gives strings, XLSX numbers, dates and None."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def check_headers(headers: list[str] | None) -> list[str]:
    """The file's columns, normalised; refused when a required one is missing or one is unknown."""
    names = [text(header).lower() for header in headers or []]
    missing = [name for name in REQUIRED if name not in names]
    unknown = [name for name in names if name not in COLUMNS]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing required column(s): {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column(s): {', '.join(repr(name) for name in unknown)}")
    if duplicated:
        problems.append(f"column(s) given twice: {', '.join(duplicated)}")
    if problems:
        raise FileRefused(
            "; ".join(problems) + f". The columns are: {', '.join(COLUMNS)} (required: {', '.join(REQUIRED)})."
        )
    return names


def read(headers: list[str] | None, records: list[tuple], *, now: datetime | None = None) -> Plan:
    """Judge every row of the file; raise ``FileRefused`` for a file that cannot be read as a whole."""
    names = check_headers(headers)
    limit = settings.ONBOARDING_MAX_ROWS
    if len(records) > limit:
        raise FileRefused(
            f"The file has {len(records):,} rows; at most {limit:,} are imported at once "
            "(ONBOARDING_MAX_ROWS). Split it into several files."
        )
    if not records:
        raise FileRefused("The file has a header but no rows.")
    now = now or timezone.now()
    plan = Plan(rows=[{name: text(value) for name, value in zip(names, record, strict=False)} for record in records])
    for column in COLUMNS:
        for row in plan.rows:
            row.setdefault(column, "")
    _Judge(plan, now).run()
    return plan


class _Judge:
    def __init__(self, plan: Plan, now: datetime) -> None:
        self.plan = plan
        self.now = now
        self.zones = timezone_names()
        self.regions = {value: value for value in Region.values} | {
            str(label).lower(): value for value, label in Region.choices
        }
        # Three queries for the whole file, whatever its size.
        emails = {_email(row["email"]) for row in plan.rows}
        serials = {row["serial"] for row in plan.rows if row["serial"]}
        names = {row["tariff"] for row in plan.rows}
        self.taken_emails = set(get_user_model().objects.filter(email__in=emails).values_list("email", flat=True))
        self.taken_serials = set(Meter.objects.filter(serial__in=serials).values_list("serial", flat=True))
        self.tariffs = {tariff.name: tariff for tariff in Tariff.objects.filter(name__in=names)}
        self.serial_lines: dict[str, int] = {}

    def error(self, line: int, column: str, message: str) -> None:
        self.plan.errors.setdefault(line, defaultdict(list))[column].append(message)

    def run(self) -> None:
        for index, row in enumerate(self.plan.rows):
            line = FIRST_LINE + index
            household = self.household(line, row)
            meter = self.meter(line, row)
            if household is None or line in self.plan.errors:
                continue
            known = self.plan.households.get(household.email)
            if known is None:
                self.plan.households[household.email] = household
            else:
                for name in HOUSEHOLD_FIELDS:
                    if getattr(known, name) != getattr(household, name):
                        self.error(
                            line, name, f"differs from line {known.line}, the same household (same email): "
                            "a household's rows must agree on its details"
                        )  # fmt: skip
            if meter is not None and line not in self.plan.errors:
                self.plan.meters.append(meter)
        self.plan.errors = {line: dict(columns) for line, columns in sorted(self.plan.errors.items())}

    def household(self, line: int, row: dict[str, str]) -> HouseholdRow | None:
        email = _email(row["email"])
        try:
            validate_email(email)
        except ValidationError:
            self.error(line, "email", f"{row['email']!r} is not an email address")
            email = ""
        if email and email in self.taken_emails:
            self.error(line, "email", f"{email} already has an account")
        name = row["name"]
        if not name:
            self.error(line, "name", "a household needs a name")
        elif len(name) > Household._meta.get_field("name").max_length:
            self.error(line, "name", "at most 150 characters")
        zone = row["timezone"]
        if zone not in self.zones:
            self.error(line, "timezone", f"{zone!r} is not an IANA time zone (for example Europe/Madrid)")
        region = self.regions.get(row["region"].lower(), None) if row["region"] else Region.PENINSULA.value
        if region is None:
            self.error(line, "region", f"{row['region']!r} is not a tax region: one of {', '.join(Region.values)}")
        tariff = self.tariffs.get(row["tariff"])
        if tariff is None:
            self.error(line, "tariff", f"no tariff is named {row['tariff']!r}" if row["tariff"] else "required")
        starts = None
        if row["contract_starts"]:
            starts = _day(row["contract_starts"])
            if starts is None:
                self.error(line, "contract_starts", f"{row['contract_starts']!r} is not a date (YYYY-MM-DD)")
            elif starts < self.now.date() - timedelta(days=CONTRACT_PAST_DAYS):
                self.error(line, "contract_starts", f"more than {CONTRACT_PAST_DAYS} days ago")
        elif zone in self.zones:
            starts = local_date(self.now, zone)
        if not email or not name or zone not in self.zones or region is None or tariff is None or starts is None:
            return None
        return HouseholdRow(email, name, row["address"], zone, region, tariff, starts, line)

    def meter(self, line: int, row: dict[str, str]) -> MeterRow | None:
        serial = row["serial"]
        extras = [name for name in ("max_power_kw", "installed_at") if row[name]]
        if not serial:
            for name in extras:
                self.error(line, name, "given without a serial")
            return None
        if len(serial) > Meter._meta.get_field("serial").max_length:
            self.error(line, "serial", "at most 64 characters")
        if serial in self.taken_serials:
            self.error(line, "serial", f"a meter with serial {serial} already exists")
        if serial in self.serial_lines:
            self.error(line, "serial", f"serial {serial} is also on line {self.serial_lines[serial]}")
        else:
            self.serial_lines[serial] = line
        power = None
        if row["max_power_kw"]:
            try:
                power = Decimal(row["max_power_kw"])
            except InvalidOperation:
                power = None
            if power is None or not power.is_finite() or not Decimal("0.001") <= power < Decimal("100000"):
                self.error(line, "max_power_kw", "a number of kW from 0.001 to 99999.999")
                power = None
            else:
                power = power.quantize(Decimal("0.001"))
        installed = None
        if row["installed_at"]:
            installed = _moment(row["installed_at"])
            if installed is None:
                self.error(line, "installed_at", "a date (YYYY-MM-DD, UTC midnight) or an ISO 8601 time with offset")
        return MeterRow(_email(row["email"]), serial, power, installed)


def _email(value: str) -> str:
    return get_user_model().objects.login_spelling(value) if value else ""


def _day(value: str) -> date | None:
    """A day as YYYY-MM-DD (an XLSX date cell reads as one at midnight)."""
    if len(value) > 10 and value[10] not in "T ":
        return None
    try:
        return parse_date(value[:10])
    except ValueError:  # a well-formed but impossible date: 2026-02-30
        return None


def _moment(value: str) -> datetime | None:
    if len(value) == 10:
        day = _day(value)
        return datetime(day.year, day.month, day.day, tzinfo=UTC) if day else None
    try:
        moment = parse_datetime(value)
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None:
        return None  # a time without an offset is ambiguous
    return moment
