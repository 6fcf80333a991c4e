"""Keep the hourly usage ledger in step with readings and tariffs.

Every write to a household's ledger here also raises ``Household.usage_version``, in the same
transaction, before it writes a line: the usage chart's cache is keyed on it (meters/charts.py), so
a write is seen by the next request. Lock order: the meters, then the household row, then its lines.
Two meters of one household may accrue the same standing hour at once (on PostgreSQL the version
rides on the read, whose snapshot predates the wait): the unique constraint with ignore_conflicts
keeps one line, not the household lock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal

from django.db import DatabaseError, connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from lib.money import cost_of, tax_of
from lib.periods import HOUR, hours_between
from meters.models import HourlyUsage, Household, Meter, TariffVersion
from meters.pricing import HouseholdSchedule

ZERO = Decimal("0")


def record_energy(
    meter: Meter, household: Household, delta: dict[datetime, Decimal], start: datetime, end: datetime
) -> None:
    """Add ``delta`` kWh per hour to the meter's lines and accrue standing charges for [start, end).

    The caller holds the meter's lock. A settled line is never touched: an hour that changes after
    settlement gets a new open line (next ``seq``) carrying the difference in kWh and in money.
    """
    if delta:
        start, end = min(start, min(delta)), max(end, max(delta) + HOUR)
    if start >= end:
        return
    schedule = HouseholdSchedule(household, start, end)
    lines = HourlyUsage.objects.filter(household=household, hour_start__gte=start, hour_start__lt=end).filter(
        # Its meter's energy lines (not its rental lines, which ingest never touches) and the standing lines.
        Q(meter=meter, kind=HourlyUsage.Kind.ENERGY) | Q(kind=HourlyUsage.Kind.STANDING)
    )
    energy_lines: defaultdict[datetime, list[HourlyUsage]] = defaultdict(list)
    standing_hours = set()
    # Energy always writes a line, so the version rides on the read. Without energy (a register that
    # did not move) only a standing hour the meter newly reached is written, if any: raised below then.
    for line in _raising_version(lines, household.pk) if delta else lines:
        if line.kind == HourlyUsage.Kind.STANDING:
            standing_hours.add(line.hour_start)
        else:
            energy_lines[line.hour_start].append(line)

    created, changed = [], []
    for hour, kwh in delta.items():
        line, is_new = _apply(meter, household, schedule, hour, kwh, energy_lines.get(hour, []))
        (created if is_new else changed).append(line)
    created += standing_lines(
        household, schedule, [hour for hour in hours_between(start, end) if hour not in standing_hours]
    )
    if changed:
        _update_lines(changed)
    if created:
        if not delta:
            bump_usage_version([household.pk])
        _insert_lines(created)


def standing_lines(household: Household, schedule: HouseholdSchedule, hours: Iterable[datetime]) -> list[HourlyUsage]:
    """New standing-charge lines for ``hours``, taxed: the hour's share of its local day's charge."""
    return _fixed_lines(household, schedule, HourlyUsage.Kind.STANDING, schedule.standing_charge, hours)


def _fixed_lines(
    household: Household,
    schedule: HouseholdSchedule,
    kind: str,
    charge: Callable[[datetime], tuple[TariffVersion | None, Decimal]],
    hours: Iterable[datetime],
    meter: Meter | None = None,
) -> list[HourlyUsage]:
    """New fixed-charge lines of ``kind`` for ``hours``: ``charge(hour)`` gives the version and the hour's
    share, taxed at the hour's rate for the kind; hours with nothing to charge get no line."""
    lines = []
    for hour in hours:
        version, share = charge(hour)
        if share:
            tax_rate = schedule.tax_rate(kind, hour)
            lines.append(
                HourlyUsage(
                    household=household,
                    meter=meter,
                    kind=kind,
                    hour_start=hour,
                    tariff_version=version,
                    cost_eur=share,
                    tax_rate=tax_rate,
                    tax_eur=tax_of(share, tax_rate),
                )
            )
    return lines


def accrue_standing(household: Household, start: datetime, end: datetime) -> int:
    """Write the household's missing fixed-charge lines of [start, end): the standing charge, the
    power term and each active meter's rental; how many were written.

    For a contract (or a contracted power) starting before the hourly job's mark (meters/standing.py),
    and for the job's few households whose tariff changed since the hour. The caller holds the
    mark's lock; the unique constraints keep a line that another writer added meanwhile. A closed
    account accrues nothing from its closing hour.
    """
    if household.closed_at is not None:
        end = min(end, household.closed_at)
    if start >= end:
        return 0
    existing = set(
        HourlyUsage.objects.filter(
            household=household,
            kind__in=[HourlyUsage.Kind.STANDING, HourlyUsage.Kind.POWER, HourlyUsage.Kind.RENTAL],
            hour_start__gte=start,
            hour_start__lt=end,
        ).values_list("kind", "meter_id", "hour_start")
    )
    schedule = HouseholdSchedule(household, start, end)
    hours = hours_between(start, end)
    lines = standing_lines(
        household, schedule, (h for h in hours if (HourlyUsage.Kind.STANDING, None, h) not in existing)
    )
    lines += power_lines(household, schedule, (h for h in hours if (HourlyUsage.Kind.POWER, None, h) not in existing))
    for meter in household.meters.filter(is_active=True, rental_per_day__gt=0).order_by("pk"):
        due = (
            h for h in hours if h + HOUR > meter.installed_at and (HourlyUsage.Kind.RENTAL, meter.pk, h) not in existing
        )
        lines += rental_lines(household, meter, schedule, due)
    if lines:
        bump_usage_version([household.pk])
        HourlyUsage.objects.bulk_create(lines, ignore_conflicts=True)
    return len(lines)


def power_lines(household: Household, schedule: HouseholdSchedule, hours: Iterable[datetime]) -> list[HourlyUsage]:
    """New power-term lines for ``hours``, taxed: the hour's share of its local day's contracted kW x price."""
    return _fixed_lines(household, schedule, HourlyUsage.Kind.POWER, schedule.power_charge, hours)


def rental_lines(
    household: Household, meter: Meter, schedule: HouseholdSchedule, hours: Iterable[datetime]
) -> list[HourlyUsage]:
    """New meter-rental lines of one meter for ``hours``, taxed: the hour's share of its daily rental."""

    def charge(hour: datetime) -> tuple[TariffVersion | None, Decimal]:
        return schedule.rental_charge(hour, meter.rental_per_day)

    return _fixed_lines(household, schedule, HourlyUsage.Kind.RENTAL, charge, hours, meter=meter)


def bump_usage_version(household_ids: Iterable[int]) -> None:
    """Say the households' ledgers change, in the writing transaction (it locks their rows until it ends)."""
    if ids := sorted(set(household_ids)):
        Household.objects.filter(pk__in=ids).update(usage_version=F("usage_version") + 1)


def _raising_version(lines: QuerySet[HourlyUsage], household_id: int) -> Iterable[HourlyUsage]:
    """``lines``, read after raising the household's usage version.

    On PostgreSQL the UPDATE rides on the SELECT in a writable CTE: an in-order reading costs no
    extra round trip for it. Elsewhere (SQLite) it is a statement of its own.
    """
    if connection.vendor != "postgresql":
        bump_usage_version([household_id])
        return lines
    sql, params = lines.query.sql_with_params()
    household_table = Household._meta.db_table
    bump = f"WITH bump AS (UPDATE {household_table} SET usage_version = usage_version + 1 WHERE id = %s) "  # noqa: S608
    return HourlyUsage.objects.raw(bump + sql, [household_id, *params])


def _insert_lines(lines: list[HourlyUsage]) -> None:
    """Insert new lines; one another writer inserted meanwhile is skipped.

    Two meters of one household may accrue the same standing hour at once: the unique constraint keeps
    one, the other insert is skipped (ignore_conflicts, ON CONFLICT DO NOTHING). On PostgreSQL one
    INSERT of a column array each, as text: bulk_create() prepares every field of every line through
    its model field, which cost more than the rest of a 1,000-reading batch's ledger work.
    """
    if connection.vendor != "postgresql":
        HourlyUsage.objects.bulk_create(lines, ignore_conflicts=True)
        return
    now = timezone.now()
    for line in lines:
        line.updated_at = now  # what auto_now sets
    fields = [field for field in HourlyUsage._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    arrays = ", ".join(f"%s::{field.cast_db_type(connection)}[]" for field in fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {HourlyUsage._meta.db_table} ({columns}) SELECT * FROM unnest({arrays}) "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            [[_as_text(getattr(line, field.attname)) for line in lines] for field in fields],
        )


def _as_text(value: object) -> object:
    """A line's value as PostgreSQL reads it for its column: Decimals and times as text (psycopg quotes
    text faster than it formats either), everything else as it is."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _update_lines(lines: list[HourlyUsage]) -> None:
    # One plain UPDATE per line, sent together: the ORM's bulk_update builds a CASE expression per
    # column, which costs more than the rest of a single-reading ingest. Only open lines get here.
    # The hour with the id: where lines are partitioned by time, it picks the partition; the household
    # routes it to one shard of a database distributed by household.
    table = HourlyUsage._meta.db_table
    now = timezone.now()
    sql = (
        f"UPDATE {table} SET kwh = %s, tariff_version_id = %s, rate = %s, cost_eur = %s, tax_eur = %s, "  # noqa: S608
        "updated_at = %s WHERE id = %s AND hour_start = %s AND household_id = %s AND settled_at IS NULL"
    )
    hour_start = HourlyUsage._meta.get_field("hour_start")  # compared, so in the database's own format
    rows = [
        (
            line.kwh,
            line.tariff_version_id,
            line.rate,
            line.cost_eur,
            line.tax_eur,
            now,
            line.pk,
            hour_start.get_db_prep_value(line.hour_start, connection),
            line.household_id,
        )
        for line in lines
    ]
    with connection.cursor() as cursor:
        if len(rows) == 1:
            cursor.execute(sql, rows[0])  # the usual case; executemany would enter psycopg's pipeline mode
        else:
            cursor.executemany(sql, rows)
        if cursor.rowcount != len(lines):
            # Lock order makes this impossible; if it ever happens, roll back rather than lose energy.
            raise DatabaseError(f"{len(lines) - cursor.rowcount} usage lines were settled while being updated")


def _apply(meter, household, schedule, hour, kwh, existing) -> tuple[HourlyUsage, bool]:
    settled = [line for line in existing if line.settled_at is not None]
    open_lines = [line for line in existing if line.settled_at is None]
    settled_kwh = sum((line.kwh for line in settled), ZERO)
    settled_eur = sum((line.cost_eur for line in settled), ZERO)
    settled_tax = sum((line.tax_eur or ZERO for line in settled), ZERO)
    if open_lines:
        line, is_new = open_lines[0], False
        line.kwh += kwh
        if line.rate is None and not settled:
            # Still waiting for a price: one may have been imported since the line was made.
            line.tariff_version, line.rate = schedule.energy_rate(hour)
    else:
        # An adjustment keeps the price and the taxes its hour was settled at; a new hour takes the schedule's.
        if settled:
            version, rate, tax_rate = settled[0].tariff_version, settled[0].rate, settled[0].tax_rate
        else:
            (version, rate), tax_rate = schedule.energy_rate(hour), schedule.tax_rate(HourlyUsage.Kind.ENERGY, hour)
        line = HourlyUsage(
            household=household,
            meter=meter,
            hour_start=hour,
            kwh=kwh,
            tariff_version=version,
            rate=rate,
            tax_rate=tax_rate,
            seq=max((line.seq for line in settled), default=-1) + 1,
        )
        is_new = True
    # Price the hour's whole energy and subtract what was already paid: the lines of an hour add up
    # to exactly the rounded cost of its total, however many adjustments it took.
    if line.rate is None:
        line.cost_eur = line.tax_eur = None
    else:
        hour_cost = cost_of(settled_kwh + line.kwh, line.rate)
        line.cost_eur = hour_cost - settled_eur
        line.tax_eur = tax_of(hour_cost, line.tax_rate) - settled_tax
    return line, is_new


def price_unpriced_lines(lines: QuerySet[HourlyUsage]) -> int:
    """Price those of ``lines`` still waiting for a price (e.g. after staff import dynamic prices)."""
    waiting = lines.filter(kind=HourlyUsage.Kind.ENERGY, settled_at__isnull=True, cost_eur__isnull=True)
    with transaction.atomic():
        # Lock order (meters/models.py): the meters first, so ingest cannot add energy to a line
        # between our reading it and writing its cost, and settlement cannot settle it meanwhile.
        meters = Meter.objects.select_for_update().filter(pk__in=waiting.values("meter_id")).order_by("pk")
        list(meters.values_list("pk", flat=True))
        by_household: defaultdict[int, list[HourlyUsage]] = defaultdict(list)
        for line in waiting.select_related("household__tariff"):
            # Its tax_rate was set when the line was written: the taxes of its hour, like every line's.
            by_household[line.household_id].append(line)
        priced = []
        for household_lines in by_household.values():
            household = household_lines[0].household
            hours = [line.hour_start for line in household_lines]
            schedule = HouseholdSchedule(household, min(hours), max(hours) + HOUR)
            for line in household_lines:
                version, rate = schedule.energy_rate(line.hour_start)
                if rate is not None:
                    line.tariff_version, line.rate, line.cost_eur = version, rate, cost_of(line.kwh, rate)
                    line.tax_eur = tax_of(line.cost_eur, line.tax_rate)
                    priced.append(line)
        bump_usage_version(line.household_id for line in priced)
        HourlyUsage.objects.bulk_update(priced, ["tariff_version", "rate", "cost_eur", "tax_eur"])
    return len(priced)


def reopen_lines(line_ids: list[int]) -> None:
    """Make settled lines open again because the payment that claimed them failed.

    The caller holds the lines' meter locks. If later energy already opened an adjustment line for
    the same meter and hour, the two merge into the reopened line: at most one open line per hour.
    """
    lines = list(HourlyUsage.objects.filter(pk__in=line_ids, settled_at__isnull=False).order_by("seq"))
    if not lines:
        return
    # One range query rather than an OR of a condition per line (a month's settlement has ~1,500):
    # the open lines of the span are few (adjustments, hours still waiting for a price), and the
    # key picks the ones that share a reopened line's hour.
    hours = [line.hour_start for line in lines]
    open_lines = {
        (line.household_id, line.meter_id, line.kind, line.hour_start): line
        for line in HourlyUsage.objects.filter(
            household_id__in={line.household_id for line in lines},
            hour_start__gte=min(hours),
            hour_start__lte=max(hours),
            settled_at__isnull=True,
        )
    }
    grown, merged = [], []
    for line in lines:
        later = open_lines.pop((line.household_id, line.meter_id, line.kind, line.hour_start), None)
        if later is not None:
            line.kwh += later.kwh
            line.cost_eur = None if None in (line.cost_eur, later.cost_eur) else line.cost_eur + later.cost_eur
            line.tax_eur = None if None in (line.tax_eur, later.tax_eur) else line.tax_eur + later.tax_eur
            grown.append(line)
            merged.append(later.pk)
    # A merge moves money between lines and leaves each hour's sum: bumped all the same, so no
    # reader of the version has to know which writes change which figures.
    bump_usage_version(line.household_id for line in lines)
    # Delete first: the reopened line would otherwise be a second open line for its hour.
    HourlyUsage.objects.filter(pk__in=merged).delete()
    HourlyUsage.objects.filter(pk__in=[line.pk for line in lines]).update(settled_at=None)
    # Only merged lines changed amounts: bulk_update's CASE per row is costly for a month of lines.
    HourlyUsage.objects.bulk_update(grown, ["kwh", "cost_eur", "tax_eur"])
