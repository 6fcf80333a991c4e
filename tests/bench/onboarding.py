"""Bulk onboarding: a file of households with one meter each imported in one go, beside a bulk INSERT of the same rows.

1. Setup: a flat tariff with a standing charge, a staff member, and an onboarding CSV of
   ``--onboarding-rows`` rows (one household and one meter each) in memory.
2. Ceiling: the same users, households and meters written by three multi-row INSERTs (no checks,
   no contract, no wallet, no audit), in a transaction rolled back, so the figure starts from the
   same database.
3. Figure: what "Confirm import" runs, in this process: the CSV parsed by django-import-export,
   every row judged (rows.py), then the write (importing.py: users, households, contracts, wallets
   with their derived addresses, meters, today's standing charge, the audit entry). The preview
   (parse and judge only) is timed too and reported in the notes.
4. Checks: every household has its login, contract, wallet and meter; no meter has a token yet.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from decimal import Decimal

from tests.bench.report import Row, say

GOAL_SECONDS = 60  # the goal: 5,000 rows in under a minute


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("onboarding")
    group.add_argument("--onboarding-rows", type=int, default=5_000, help="rows in the imported file (default 5,000)")


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    import tablib
    from django.conf import settings
    from import_export.formats.base_formats import CSV

    from energypay.accounts.models import User
    from energypay.onboarding.resources import OnboardingResource
    from meters.models import Tariff, TariffVersion

    count = options.onboarding_rows
    settings.ONBOARDING_MAX_ROWS = max(settings.ONBOARDING_MAX_ROWS, count)
    tariff = Tariff.objects.create(name="Onboarding bench")
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        kind="flat",
        flat_rate=Decimal("0.25"),
        standing_charge_per_day=Decimal("0.35"),
    )
    staff = User.objects.create_user("onboarding-bench@example.com", None, is_staff=True)
    header = "email,name,address,timezone,region,tariff,serial,max_power_kw"
    lines = [
        f"home{n}@onboarding.example,Home {n},Calle {n},Europe/Madrid,peninsula,{tariff.name},OB-{n:07d},25"
        for n in range(count)
    ]
    text = "\n".join([header, *lines]) + "\n"
    say(f"setup: {count:,} rows ({len(text) / 1024:,.0f} KiB of CSV)")

    say("ceiling: a bulk INSERT of the same users, households and meters (rolled back) ...")
    ceiling_seconds = _bulk_insert(count, tariff.pk)
    say(f"  {ceiling_seconds:.2f} s: {count / ceiling_seconds:,.0f} rows/s")

    say("preview: parse and judge every row (nothing written) ...")
    began = time.perf_counter()
    preview = OnboardingResource().import_data(CSV().create_dataset(text), dry_run=True, user=staff)
    preview_seconds = time.perf_counter() - began
    assert not preview.has_errors() and not preview.has_validation_errors(), "the bench file has errors"
    say(f"  {preview_seconds:.2f} s")

    say("figure: the import as confirmed (parse, judge, write in one transaction) ...")
    began, cpu = time.perf_counter(), time.process_time()
    dataset: tablib.Dataset = CSV().create_dataset(text)
    result = OnboardingResource().import_data(dataset, dry_run=False, user=staff, file_name="bench.csv")
    figure_seconds, figure_cpu = time.perf_counter() - began, time.process_time() - cpu
    outcome = result.outcome
    say(f"  {figure_seconds:.2f} s: {count / figure_seconds:,.0f} rows/s ({outcome.standing_lines:,} standing lines)")

    problems = _check(outcome.batch.pk, count)
    for problem in problems:
        say(f"WARNING onboarding: {problem}")
    if not problems:
        say("  every household has its login, contract, wallet and meter; no token was issued yet")

    rows = [
        Row(
            f"onboarding: {count:,}-row import, all or nothing (in {figure_seconds:.1f} s)",
            count / figure_seconds,
            "rows/s",
            "a bulk INSERT of the same rows",
            count / ceiling_seconds,
            "rows/s",
            goal=0,
            min_figure=count / GOAL_SECONDS,
        )
    ]
    notes = [
        f"Onboarding: {count:,} rows imported in {figure_seconds:.1f} s ({figure_cpu:.1f} s CPU in this process; "
        f"goal under {GOAL_SECONDS} s); the preview alone (parse and judge) took {preview_seconds:.1f} s; the bare "
        f"INSERT of users, households and meters {ceiling_seconds:.1f} s.",
        *[f"WARNING onboarding: {problem}" for problem in problems],
    ]
    data = {
        "notes": notes,
        "config": {"rows": count},
        "figure": {"seconds": figure_seconds, "cpu_seconds": figure_cpu, "standing_lines": outcome.standing_lines},
        "preview_seconds": preview_seconds,
        "ceiling": {"seconds": ceiling_seconds, "includes": "INSERT users, households, meters (multi-row)"},
        "problems": problems,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


def _bulk_insert(count: int, tariff_id: int) -> float:
    """Users, households and meters of the same rows in three INSERT ... SELECT over arrays; rolled back."""
    from django.db import connection, transaction

    emails = [f"home{n}@onboarding.example" for n in range(count)]
    began = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO accounts_user (email, password, full_name, is_staff, is_active, is_superuser, date_joined)
            SELECT e, '!', '', false, true, false, now() FROM unnest(%s::text[]) AS e
            """,
            [emails],
        )
        cursor.execute(
            """
            INSERT INTO meters_household (user_id, name, address, tax_id, cups, timezone, region, language,
                                          tariff_id, created_at, usage_version)
            SELECT u.id, 'Home ' || u.id, 'Calle ' || u.id, '', '', 'Europe/Madrid', 'peninsula', 'es', %s,
                   now(), 0
            FROM accounts_user u WHERE u.email = ANY(%s)
            """,
            [tariff_id, emails],
        )
        cursor.execute(
            """
            INSERT INTO meters_meter (serial, household_id, max_power_kw, is_active, rental_per_day, installed_at,
                                      rate_window, rate_count, created_at)
            SELECT 'OB-' || lpad(h.id::text, 7, '0') || '-x', h.id, 25, true, 0, now(), 0, 0, now()
            FROM meters_household h JOIN accounts_user u ON u.id = h.user_id WHERE u.email = ANY(%s)
            """,
            [emails],
        )
        seconds = time.perf_counter() - began
        transaction.set_rollback(True)
    return seconds


def _check(batch_id: int, count: int) -> list[str]:
    from energypay.onboarding.models import ImportBatch
    from meters.models import Household, Meter, TariffAssignment
    from payments.models import Wallet

    batch = ImportBatch.objects.get(pk=batch_id)
    households = Household.objects.filter(meters__pk__in=batch.meter_ids)
    problems = []
    if (batch.households, batch.meters) != (count, count):
        problems.append(f"the batch counts {batch.households} households and {batch.meters} meters")
    if households.count() != count or Wallet.objects.filter(household__in=households).count() != count:
        problems.append("a household or a wallet is missing")
    if TariffAssignment.objects.filter(household__in=households).count() != count:
        problems.append("a contract is missing")
    if Meter.objects.filter(pk__in=batch.meter_ids, token_hash__isnull=False).exists():
        problems.append("a token was issued before the download")
    return problems
