"""The fixed charges of every contract, hour by hour, whether its meters report or not: the
standing charge, the power term (contracted kW x EUR/kW/day, for tariffs that price power) and
each active meter's rental.

Ingest writes the standing lines of the hours its readings span; a silent meter writes none. This
hourly job (beat, a few minutes before settlement) writes the missing ones for every household
under contract (meters/contracts.py), up to the last hour that has ended, so the run that pays
the hour pays its fixed charges too. Power and rental lines are written only here (and by
``meters.usage.accrue_standing`` for hours before the job's mark), never by ingest.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.utils import timezone

from lib.money import tax_of
from lib.periods import HOUR, floor_hour, local_date
from meters.models import (
    ContractedPower,
    HourlyUsage,
    Household,
    Meter,
    StandingMark,
    Tariff,
    TariffAssignment,
    parse_kilowatts,
)
from meters.pricing import TariffSchedule, TaxSchedule, day_share, max_kilowatts
from meters.usage import accrue_standing

log = logging.getLogger(__name__)


def accrue_standing_charges(now: datetime) -> int:
    """Write every contract's missing standing lines up to ``floor_hour(now)``; how many were written.

    Steps, per hour after the mark (``StandingMark``), each in its own transaction:
    1. claim the hour: a conditional UPDATE moves the mark past it (a run that lost the race waits
       for the winner's commit, finds the mark moved and goes on from there: nothing twice);
    2. group the households whose current tariff covers the hour by what prices its standing line:
       the tariff, the time zone (the local day's 23, 24 or 25 hours) and the tax region (the few
       whose tariff changed since that hour are priced one by one from their assignments);
    3. per group, price the line once (meters/pricing.py), raise the usage version of the
       households that lack it (their rows first: the lock order), and insert their lines in one
       INSERT ... SELECT; the unique constraint skips any that ingest wrote meanwhile.
    """
    until = floor_hour(now)
    mark = StandingMark.objects.filter(pk=1).first()
    if mark is None:
        # The migration that introduced contracts sets it; without it, start now rather than bill the past.
        mark, _ = StandingMark.objects.get_or_create(pk=1, defaults={"accrued_until": until})
        log.warning("standing_mark_missing started_at=%s", mark.accrued_until.isoformat())
    written = 0
    hour = mark.accrued_until
    while hour < until:
        with transaction.atomic():
            if StandingMark.objects.filter(pk=1, accrued_until=hour).update(accrued_until=hour + HOUR):
                written += _accrue_hour(hour)
                hour += HOUR
                continue
        hour = StandingMark.objects.get(pk=1).accrued_until  # another run got there first
    if written:
        log.info("standing_accrued lines=%d until=%s", written, until.isoformat())
    return written


def on_current_tariff(hour: datetime) -> QuerySet[Household]:
    """Households whose current tariff covers ``hour``: all of them under contract, in the usual hour.

    Plain column conditions, so the planner estimates them well (an expression over assignments
    made it expect fifty households where there were ten thousand, and pick a nested loop).
    """
    covers = Q(tariff_since__lte=hour) & (Q(tariff_until__isnull=True) | Q(tariff_until__gt=hour))
    return Household.objects.filter(covers).filter(open_at(hour)).order_by()


def open_at(hour: datetime) -> Q:
    """Households whose account is not closed at ``hour``: a closed account accrues nothing from its closing hour."""
    return Q(closed_at__isnull=True) | Q(closed_at__gt=hour)


def accrue_new_contracts(household_ids: list[int], until: datetime) -> int:
    """The standing lines of contracts just started before the job's mark, set-based; how many were written.

    For many new households at once (bulk onboarding, energypay/onboarding/importing.py), where
    ``contracts.start_contract`` accrues one household at a time. The caller holds the mark's lock
    (``until`` is its ``accrued_until``), so the job and this leave no hour between them. New
    households have one assignment each and no line yet: their usage version is raised once, and
    each hour of each group (tariff, time zone, tax region, start) is priced once and written in
    one INSERT ... SELECT.
    """
    among = Household.objects.filter(pk__in=household_ids).order_by()
    groups = list(among.values_list("tariff_id", "timezone", "region", "tariff_since").distinct())
    groups = [group for group in groups if group[3] is not None and group[3] < until]
    if not groups:
        return 0
    Household.objects.filter(pk__in=household_ids).update(usage_version=F("usage_version") + 1)
    tariffs = Tariff.objects.in_bulk({group[0] for group in groups})
    written = 0
    for tariff_id, tz_name, region, since in groups:
        tariff = tariffs[tariff_id]
        schedule, taxes = TariffSchedule(tariff, tz_name, since, until), TaxSchedule(tariff, region)
        members = among.filter(tariff_id=tariff_id, timezone=tz_name, region=region, tariff_since=since)
        hour = since
        while hour < until:
            version, share = schedule.standing_charge(hour)
            if share:
                for tax_rate, ids in _tax_splits(taxes, HourlyUsage.Kind.STANDING, hour, tz_name, members):
                    some = members if ids is None else members.filter(pk__in=ids)
                    written += _insert_lines(some, hour, version.pk, share, tax_rate, tax_of(share, tax_rate))
            hour += HOUR
    return written


def _accrue_power(households: QuerySet[Household], groups, tariffs, hour: datetime) -> int:
    """The hour's power-term lines of households whose tariff prices power, grouped by contracted kW."""
    written = 0
    already = HourlyUsage.objects.filter(household=OuterRef("pk"), kind=HourlyUsage.Kind.POWER, hour_start=hour)
    for tariff_id, tz_name, region in groups:
        tariff = tariffs[tariff_id]
        schedule = TariffSchedule(tariff, tz_name, hour, hour + HOUR)
        version, prices = schedule.power_prices(hour)
        if not prices:
            continue
        members = households.filter(tariff_id=tariff_id, timezone=tz_name, region=region).exclude(Exists(already))
        by_power: dict[tuple, list[int]] = {}
        for household_id, kw in _contracted_at(members.values("pk"), hour).items():
            by_power.setdefault(tuple(sorted(kw.items())), []).append(household_id)
        taxes, day = TaxSchedule(tariff, region), local_date(hour, tz_name)
        for kw_items, ids in by_power.items():
            kw = parse_kilowatts(dict(kw_items))
            _, share = schedule.power_charge(hour, kw)
            if not share:
                continue
            tax_rate = taxes.rate(HourlyUsage.Kind.POWER, day, max_kilowatts(kw))
            Household.objects.filter(pk__in=ids).update(usage_version=F("usage_version") + 1)
            written += _insert_lines(
                Household.objects.filter(pk__in=ids).order_by(),
                hour,
                version.pk,
                share,
                tax_rate,
                tax_of(share, tax_rate),
                kind=HourlyUsage.Kind.POWER,
            )
    return written


def _accrue_rental(households: QuerySet[Household], hour: datetime) -> int:
    """The hour's rental lines of the active meters of ``households``, grouped by what prices them."""
    already = HourlyUsage.objects.filter(meter=OuterRef("pk"), kind=HourlyUsage.Kind.RENTAL, hour_start=hour)
    meters = (
        Meter.objects.filter(
            household__in=households.values("pk"),
            is_active=True,
            rental_per_day__gt=0,
            installed_at__lt=hour + HOUR,
        )
        .exclude(Exists(already))
        .order_by()
    )
    groups = list(
        meters.values_list(
            "household__tariff_id", "household__timezone", "household__region", "rental_per_day"
        ).distinct()
    )
    tariffs = Tariff.objects.in_bulk({group[0] for group in groups})
    written = 0
    for tariff_id, tz_name, region, per_day in groups:
        tariff = tariffs[tariff_id]
        version = TariffSchedule(tariff, tz_name, hour, hour + HOUR).version_at(hour)
        share = day_share(hour, tz_name, per_day)
        if not share:
            continue
        members = meters.filter(household__tariff_id=tariff_id, household__timezone=tz_name, household__region=region)
        members = members.filter(rental_per_day=per_day)
        Household.objects.filter(pk__in=members.values("household_id")).update(usage_version=F("usage_version") + 1)
        owners = Household.objects.filter(pk__in=members.values("household_id"))
        for tax_rate, ids in _tax_splits(TaxSchedule(tariff, region), HourlyUsage.Kind.RENTAL, hour, tz_name, owners):
            some = members if ids is None else members.filter(household_id__in=ids)
            select, params = some.values("id", "household_id").query.sql_with_params()
            written += _insert(
                "meter_id, household_id",
                "due.id, due.household_id",
                f"({select}) AS due",
                params,
                HourlyUsage.Kind.RENTAL,
                hour,
                version.pk if version else None,
                share,
                tax_rate,
                tax_of(share, tax_rate),
            )
    return written


def _accrue_hour(hour: datetime) -> int:
    households = on_current_tariff(hour)
    groups = list(households.values_list("tariff_id", "timezone", "region").distinct())
    tariffs = Tariff.objects.in_bulk({tariff_id for tariff_id, _, _ in groups})
    written = 0
    already = HourlyUsage.objects.filter(household=OuterRef("pk"), kind=HourlyUsage.Kind.STANDING, hour_start=hour)
    for tariff_id, tz_name, region in groups:
        tariff = tariffs[tariff_id]
        version, share = TariffSchedule(tariff, tz_name, hour, hour + HOUR).standing_charge(hour)
        if not share:
            continue
        missing = households.filter(tariff_id=tariff_id, timezone=tz_name, region=region).exclude(Exists(already))
        if not Household.objects.filter(pk__in=missing.values("pk")).update(usage_version=F("usage_version") + 1):
            continue
        taxes = TaxSchedule(tariff, region)
        for tax_rate, ids in _tax_splits(taxes, HourlyUsage.Kind.STANDING, hour, tz_name, missing):
            some = missing if ids is None else Household.objects.filter(pk__in=ids).order_by()
            written += _insert_lines(some, hour, version.pk, share, tax_rate, tax_of(share, tax_rate))
    written += _accrue_power(households, groups, tariffs, hour)
    written += _accrue_rental(households, hour)
    # Households under contract whose current tariff does not cover the hour (a run catching up on
    # hours before a tariff change): few, and priced one by one from their assignments.
    started = TariffAssignment.objects.filter(household=OuterRef("pk"), valid_from__lte=hour)
    others = (
        Household.objects.filter(Q(tariff_since__gt=hour) | Q(tariff_until__lte=hour))
        .filter(open_at(hour))
        .order_by("pk")
    )
    # (accrue_standing writes whichever of the hour's standing, power and rental lines are missing.)
    for household in others.filter(Exists(started)).select_related("tariff"):
        written += accrue_standing(household, hour, hour + HOUR)
    return written


def _tax_splits(
    taxes: TaxSchedule, kind: str, hour: datetime, tz_name: str, households: QuerySet[Household]
) -> list[tuple[Decimal, set[int] | None]]:
    """The tax factor of a line of ``kind`` at ``hour`` for ``households``, with the households it is
    for (None: all of them). One factor and no query unless a rule depends on contracted power; then
    the households' contracted power at the hour is read once and they are split by factor."""
    day = local_date(hour, tz_name)
    if not taxes.conditional:
        return [(taxes.rate(kind, day), None)]
    ids = list(households.values_list("pk", flat=True))
    current = {pk: {} for pk in ids} | _contracted_at(ids, hour)
    splits: dict[Decimal, set[int]] = {}
    for household_id, kw in current.items():
        rate = taxes.rate(kind, day, max_kilowatts(parse_kilowatts(kw)))
        splits.setdefault(rate, set()).add(household_id)
    return list(splits.items())


def _contracted_at(households, hour: datetime) -> dict[int, dict]:
    """Each household's contracted power (kW per period) at ``hour``: its latest row from before it;
    households without one are absent. ``households``: ids or a subquery of them. One row per
    household and change: small beside the ledger."""
    current: dict[int, dict] = {}
    rows = ContractedPower.objects.filter(household__in=households, valid_from__lte=hour)
    for household_id, kw in rows.order_by("household_id", "valid_from").values_list("household_id", "kw"):
        current[household_id] = kw  # ordered: the latest row wins
    return current


def _insert_lines(
    missing: QuerySet[Household], hour, version_id, share, tax_rate, tax_eur, kind: str = HourlyUsage.Kind.STANDING
) -> int:
    """One INSERT ... SELECT of a household's line (standing charge or power term) per household of
    ``missing``; skipped where one exists."""
    select, params = missing.values("id").query.sql_with_params()
    return _insert(
        "household_id", "due.id", f"({select}) AS due", params, kind, hour, version_id, share, tax_rate, tax_eur
    )


def _insert(owner_columns, owners, source_sql, params, kind, hour, version_id, share, tax_rate, tax_eur) -> int:
    """INSERT ... SELECT one line of ``kind`` at ``hour`` per row of ``source_sql`` (``owners`` the
    selected values for ``owner_columns``); skipped where one exists."""
    ops = connection.ops
    table = HourlyUsage._meta.db_table
    columns = f"{owner_columns}, kind, hour_start, seq, kwh, tariff_version_id, cost_eur, tax_rate, tax_eur, updated_at"
    # "WHERE true": SQLite would read ON CONFLICT as the join's ON otherwise.
    sql = (
        f"INSERT INTO {table} ({columns}) "  # noqa: S608 (table and column names are ours)
        f"SELECT {owners}, %s, %s, 0, 0, %s, %s, %s, %s, %s FROM {source_sql} WHERE true ON CONFLICT DO NOTHING"
    )
    decimal = HourlyUsage._meta.get_field
    values = [
        str(kind),
        ops.adapt_datetimefield_value(hour),
        version_id,
        ops.adapt_decimalfield_value(share, decimal("cost_eur").max_digits, decimal("cost_eur").decimal_places),
        ops.adapt_decimalfield_value(tax_rate, decimal("tax_rate").max_digits, decimal("tax_rate").decimal_places),
        ops.adapt_decimalfield_value(tax_eur, decimal("tax_eur").max_digits, decimal("tax_eur").decimal_places),
        ops.adapt_datetimefield_value(timezone.now()),
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, values + list(params))
        return cursor.rowcount
