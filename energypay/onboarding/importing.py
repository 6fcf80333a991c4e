"""Bulk onboarding: a judged file (rows.py) written all at once, or not at all.

Each household gets what the household admin gives one created by hand: its login (email, no
password until its owner sets one through "forgot password"), its contract on the tariff from a
local day (the standing charge accrues from that day's first hour), its wallet; then its meters,
without tokens (they are issued once, by the download: downloads.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction

from energypay.onboarding.models import ImportBatch
from energypay.onboarding.rows import Plan
from meters.audit import record_action
from meters.contracts import first_hour_of
from meters.models import Household, Meter, StandingMark, TariffAssignment
from meters.standing import accrue_new_contracts
from payments import keys
from payments.models import Wallet

log = logging.getLogger(__name__)
BATCH = 1_000


class ImportConflict(ValueError):
    """The database changed between the check and the write (an email or serial taken meanwhile)."""


@dataclass
class Outcome:
    batch: ImportBatch
    households: int
    meters: int
    standing_lines: int


def apply(plan: Plan, *, acting_user, file_name: str = "") -> Outcome:
    """Write the judged file in one transaction; nothing of it stays if any part fails.

    Steps, in the lock order of meters/models.py (the standing mark first, as a contract's start takes it):
    1. users (unusable passwords), households already on their contract, their tariff assignments;
    2. wallets (addresses from the household account's public key, as ``open_wallet`` derives them);
    3. meters (no token yet), the standing charge of the hours since each contract began, set-based;
    4. the batch (its meter ids, for the one-time token download) and one audit entry naming counts.
    """
    if not plan.ok:
        raise ValueError("a plan with errors is never written")
    try:
        with transaction.atomic(durable=True):
            mark = StandingMark.objects.select_for_update().filter(pk=1).first()
            households = _households(plan, acting_user)
            _wallets(households)
            meters = _meters(plan, households)
            lines = accrue_new_contracts([h.pk for h in households.values()], mark.accrued_until) if mark else 0
            batch = ImportBatch.objects.create(
                created_by=acting_user,
                file_name=file_name[:255],
                households=len(households),
                meters=len(meters),
                meter_ids=[meter.pk for meter in meters],
            )
            summary = f"Imported {len(households):,} households and {len(meters):,} meters from {file_name or 'a file'}"
            record_action(
                batch,
                "onboarding.import",
                summary,
                actor=acting_user,
                households=len(households),
                meters=len(meters),
                file_name=file_name,
            )
    except IntegrityError as error:
        # Another import or a staff member took an email or a serial after the check: nothing was written.
        log.warning("onboarding_import_conflict error=%s", type(error).__name__)
        raise ImportConflict(
            "An email or serial in the file was registered meanwhile; nothing was imported. Check the file again."
        ) from None
    log.info("onboarding_imported batch=%s households=%d meters=%d", batch.pk, len(households), len(meters))
    return Outcome(batch, len(households), len(meters), lines)


def _households(plan: Plan, acting_user) -> dict[str, Household]:
    User = get_user_model()
    rows = list(plan.households.values())
    users = User.objects.bulk_create(
        [User(email=row.email, password=make_password(None)) for row in rows], batch_size=BATCH
    )
    starts = [first_hour_of(row.contract_starts, row.timezone) for row in rows]
    created = Household.objects.bulk_create(
        [
            Household(
                user=user,
                name=row.name,
                address=row.address,
                timezone=row.timezone,
                region=row.region,
                tariff=row.tariff,
                # The one assignment below: what meters/contracts.py keeps these in step with.
                tariff_since=start,
                tariff_until=None,
            )
            for row, user, start in zip(rows, users, starts, strict=True)
        ],
        batch_size=BATCH,
    )
    TariffAssignment.objects.bulk_create(
        [
            TariffAssignment(household=household, tariff=row.tariff, valid_from=start, created_by=acting_user)
            for row, household, start in zip(rows, created, starts, strict=True)
        ],
        batch_size=BATCH,
    )
    return {row.email: household for row, household in zip(rows, created, strict=True)}


def _wallets(households: dict[str, Household]) -> None:
    wallets = []
    for household in households.values():
        address, public_key = keys.household_public(household.pk)
        wallets.append(
            Wallet(household=household, derivation_index=household.pk, address=address, public_key=public_key)
        )
    Wallet.objects.bulk_create(wallets, batch_size=BATCH)


def _meters(plan: Plan, households: dict[str, Household]) -> list[Meter]:
    meters = []
    for row in plan.meters:
        meter = Meter(serial=row.serial, household=households[row.email])
        if row.max_power_kw is not None:
            meter.max_power_kw = row.max_power_kw
        if row.installed_at is not None:
            meter.installed_at = row.installed_at
        meters.append(meter)
    return Meter.objects.bulk_create(meters, batch_size=BATCH)
