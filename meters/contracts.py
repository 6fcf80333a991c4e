"""A household's contract: the tariff it is on at each hour, and the day its standing charge starts.

A household changes tariff through ``TariffAssignment`` rows, each pricing the hours from its start
to the next one; its first assignment starts the contract. ``Household.tariff`` is the tariff in
force now, with ``tariff_since`` and ``tariff_until`` around it, kept in step here (the only
writer), so that ingest prices the usual hour without reading assignments (meters/pricing.py).

History keeps its price: a change starts after every hour that could already be in the ledger (the
clock plus ingest's tolerance for meters whose clock runs ahead), so no priced or settled hour is
re-priced, and the usage a late reading adds to an hour before the change takes the old tariff.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Min, OuterRef, Subquery

from lib.periods import HOUR, ceil_hour, floor_hour, local_midnight, zone
from meters.audit import record_action
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
from meters.usage import accrue_standing

log = logging.getLogger(__name__)


class ContractError(ValueError):
    """A refused tariff change (it would re-price hours that may be in the ledger); the message says why."""


def first_hour_of(day: date, tz_name: str) -> datetime:
    """The first UTC hour of a local day (in a zone with a half-hour offset, the first that starts in it)."""
    return ceil_hour(local_midnight(day, tz_name))


def local_hour(day: date, hour: int, tz_name: str) -> datetime:
    """The first UTC hour starting at or after the local clock time ``hour``:00 of ``day``.

    A clock time inside a DST gap (02:30 the night clocks go forward) is read with the offset
    before the gap, which lands just after it.
    """
    if hour == 0:
        return first_hour_of(day, tz_name)
    return ceil_hour(datetime(day.year, day.month, day.day, hour, tzinfo=zone(tz_name)).astimezone(UTC))


def earliest_change(now: datetime) -> datetime:
    """The first hour a tariff change may start at: no line of it or after it can exist yet.

    Ingest takes readings up to INGEST_FUTURE_TOLERANCE ahead of the clock, and their hour with them.
    """
    return floor_hour(now + settings.INGEST_FUTURE_TOLERANCE) + HOUR


def contract_start(household: Household) -> datetime | None:
    first = household.tariff_assignments.order_by("valid_from").first()
    return first.valid_from if first else None


def start_contract(household_id: int, start: datetime, *, acting_user=None) -> TariffAssignment:
    """Record that the household's contract, on its current tariff, starts at ``start`` (on the hour).

    Its standing charge accrues from then on: the hours before the job's mark (meters/standing.py)
    are written here, in the same transaction, holding the mark's lock so the job and this do not
    leave an hour between them. A household already under contract is refused.
    """
    if floor_hour(start) != start:
        raise ContractError("A contract starts on the hour.")
    with transaction.atomic():
        # Lock order (meters/models.py): the mark, then the household.
        mark = StandingMark.objects.select_for_update().filter(pk=1).first()
        household = Household.objects.select_for_update().select_related("tariff").get(pk=household_id)
        if household.tariff_assignments.exists():
            raise ContractError(
                f"{household} is already under contract since {contract_start(household):%Y-%m-%d %H:%M} UTC."
            )
        assignment = TariffAssignment.objects.create(
            household=household, tariff=household.tariff, valid_from=start, created_by=acting_user
        )
        _keep_in_step(household)
        household.refresh_from_db()
        if mark is not None:
            accrue_standing(household, start, mark.accrued_until)
    log.info("contract_started household=%s tariff=%s start=%s", household.pk, household.tariff_id, start.isoformat())
    return assignment


def assign_tariff(
    household_id: int, tariff: Tariff, valid_from: datetime, *, now: datetime, acting_user=None
) -> TariffAssignment:
    """Put the household on ``tariff`` from ``valid_from`` (on the hour, at or after ``earliest_change(now)``).

    Hours before it keep the tariff they had. A change planned from the same hour or later is
    replaced (assigning the current tariff again withdraws a planned change). A household without a
    contract first gets one on its current tariff, from its first hour in the ledger or its creation.
    """
    if floor_hour(valid_from) != valid_from:
        raise ContractError("A tariff change starts on the hour.")
    earliest = earliest_change(now)
    if valid_from < earliest:
        raise ContractError(
            f"A tariff change cannot start before {earliest:%Y-%m-%d %H:%M} UTC: earlier hours may already be "
            "priced or paid, and keep their tariff."
        )
    with transaction.atomic():
        household = Household.objects.select_for_update().get(pk=household_id)
        if not household.tariff_assignments.exists():
            first_line = HourlyUsage.objects.filter(household=household).aggregate(first=Min("hour_start"))["first"]
            start = min(filter(None, [first_line, floor_hour(household.created_at)]))
            TariffAssignment.objects.create(household=household, tariff=household.tariff, valid_from=start)
        # valid_from is after now: what this drops has priced nothing yet.
        household.tariff_assignments.filter(valid_from__gte=valid_from).delete()
        assignment = TariffAssignment.objects.create(
            household=household, tariff=tariff, valid_from=valid_from, created_by=acting_user
        )
        _keep_in_step(household, now)
    log.info(
        "tariff_assigned household=%s tariff=%s from=%s by=%s",
        household.pk,
        tariff.pk,
        valid_from.isoformat(),
        getattr(acting_user, "pk", None),
    )
    return assignment


def contracted_power_refusal(household: Household, valid_from: datetime, now: datetime) -> str | None:
    """Why contracted power may not change from ``valid_from``, or None: a power term already charged
    from that hour on keeps the power it was charged for."""
    earliest = earliest_change(now)
    if valid_from >= earliest:
        return None
    charged = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.POWER, hour_start__gte=valid_from)
    if not charged.exists():
        return None
    return (
        f"Contracted power cannot change before {earliest:%Y-%m-%d %H:%M} UTC: the power term of earlier "
        "hours is already in the ledger, and keeps the power it was charged for."
    )


def set_contracted_power(
    household_id: int, kw: dict, valid_from: datetime, *, now: datetime, acting_user=None
) -> ContractedPower:
    """Record the household's contracted kW per power period from ``valid_from`` (on the hour).

    It prices the power term of its hours forever, so it may start at ``earliest_change(now)`` or
    later, or earlier only while the household has no power line from that hour on (a new
    contract's first contracted power, recorded after its start): then the power term of the hours
    before the job's mark is written here, holding the mark's lock like ``start_contract``. A change
    planned from the same hour or later is replaced.
    """
    if floor_hour(valid_from) != valid_from:
        raise ContractError("Contracted power changes on the hour.")
    try:
        kilowatts = parse_kilowatts(kw)
    except ValueError as error:
        raise ContractError(str(error)) from None
    with transaction.atomic():
        mark = StandingMark.objects.select_for_update().filter(pk=1).first()
        household = Household.objects.select_for_update().select_related("tariff").get(pk=household_id)
        refused = contracted_power_refusal(household, valid_from, now)
        if refused:
            raise ContractError(refused)
        household.contracted_powers.filter(valid_from__gte=valid_from).delete()
        row = ContractedPower.objects.create(
            household=household,
            valid_from=valid_from,
            kw={period: str(value) for period, value in kilowatts.items()},
            created_by=acting_user,
        )
        if mark is not None and valid_from < mark.accrued_until:
            accrue_standing(household, valid_from, mark.accrued_until)
    log.info(
        "contracted_power_set household=%s from=%s kw=%s by=%s",
        household_id,
        valid_from.isoformat(),
        row.kw,
        getattr(acting_user, "pk", None),
    )
    return row


def close_account(household_id: int, *, now: datetime, acting_user=None) -> datetime:
    """Close the household's account at the first hour no line can exist yet (``earliest_change(now)``).

    Hours before it are billed and settled as usual (the hourly run pays them); from it on nothing is:
    its meters are switched off (their tokens refused), no standing charge accrues
    (meters/standing.py), no statement covers a later month, and the statement of the closing month
    is its last. Closing twice keeps the first closing hour. Returns the closing hour.
    """
    with transaction.atomic():
        household = Household.objects.select_for_update().get(pk=household_id)
        if household.closed_at is not None:
            return household.closed_at
        closed_at = earliest_change(now)
        Household.objects.filter(pk=household_id).update(closed_at=closed_at)
        Meter.objects.filter(household_id=household_id).update(is_active=False)
        household.closed_at = closed_at
        record_action(
            household,
            "household.closed",
            f"Account closed from {closed_at:%Y-%m-%d %H:%M} UTC",
            actor=acting_user,
            closed_at=closed_at.isoformat(),
        )
    log.info(
        "account_closed household=%s at=%s by=%s", household_id, closed_at.isoformat(), getattr(acting_user, "pk", None)
    )
    return closed_at


def _keep_in_step(household: Household, now: datetime | None = None) -> None:
    """Set the household's current tariff and its bounds from its assignments (the caller holds its lock)."""
    assignments = list(household.tariff_assignments.order_by("valid_from"))
    current = [a for a in assignments if now is None or a.valid_from <= now] or assignments[:1]
    current = current[-1]
    later = [a.valid_from for a in assignments if a.valid_from > current.valid_from]
    Household.objects.filter(pk=household.pk).update(
        tariff=current.tariff_id, tariff_since=current.valid_from, tariff_until=later[0] if later else None
    )


def advance_tariffs(now: datetime) -> int:
    """Move households whose planned tariff change has begun onto it; how many moved (hourly, idempotent).

    Only ``Household.tariff`` as pages and the admin show it moves: pricing reads the assignments
    for any hour past ``tariff_until`` already, so a late run changes no price.
    """
    due = Household.objects.filter(tariff_until__lte=now)
    started = TariffAssignment.objects.filter(household=OuterRef("pk"), valid_from__lte=now).order_by("-valid_from")
    planned = TariffAssignment.objects.filter(household=OuterRef("pk"), valid_from__gt=now).order_by("valid_from")
    moved = due.update(
        tariff=Subquery(started.values("tariff")[:1]),
        tariff_since=Subquery(started.values("valid_from")[:1]),
        tariff_until=Subquery(planned.values("valid_from")[:1]),
    )
    if moved:
        log.info("tariffs_advanced households=%d", moved)
    return moved
