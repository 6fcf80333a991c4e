"""Issuing under fire: two issuers at once, and kill -9 in the middle of a run, never skip or repeat a number
and never issue a household's month twice (PostgreSQL: real row locks, a second process on the test database).

The child process is tests/payments/statements/crashkit.py; it dies by its own SIGKILL at a named point
of a chunk (composing, inserted but not committed, committed) or after a random delay, and the next
child carries on where it died, as a restarted worker would.
"""

from __future__ import annotations

import os
import random
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
from django.db import connection
from django.db.models import Count, Sum

from energypay.accounts.models import User
from meters.models import HourlyUsage, Household, Meter
from payments.statements import issuing
from payments.statements.issuing import issue_households
from payments.statements.models import InvoiceRecord, InvoiceRecordChain, SeriesCounter, Statement, StatementDelivery
from payments.statements.verifactu import records
from tests.payments import crashkit
from tests.payments.statements import kit
from tests.payments.statements.crashkit import NOW, POINTS
from tests.payments.statements.kit import OCTOBER, OCTOBER_START
from tests.threads import at_once

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions and processes: PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]

HOUSEHOLDS = 120
CHUNK = 10  # households per transaction in the child: twelve chunks, so kills land between them too
RANDOM_KILLS = 3
READY_TIMEOUT = 30
RUN_TIMEOUT = 60


def build_town(count: int) -> list[int]:
    """``count`` households contracted long ago, each with three priced hours in October (bulk inserts)."""
    tariff = kit.tou_tariff(f"Crash {secrets.token_hex(3)}")
    version = tariff.versions.get()
    tag = secrets.token_hex(3)
    users = User.objects.bulk_create(
        [User(email=f"stmt-{tag}-{n}@example.com", password=UNUSABLE_PASSWORD_PREFIX) for n in range(count)]
    )
    households = Household.objects.bulk_create(
        [Household(user=user, name=f"Crash {n}", tariff=tariff) for n, user in enumerate(users)]
    )
    kit.contracted_long_ago(*households)
    meters = Meter.objects.bulk_create([Meter(serial=f"ST-{tag}-{n}", household=h) for n, h in enumerate(households)])
    HourlyUsage.objects.bulk_create(
        HourlyUsage(
            household=meter.household,
            meter=meter,
            hour_start=OCTOBER_START + timedelta(hours=hour * 5),
            kwh=Decimal("0.5") + Decimal(n % 11) / 10,
            tariff_version=version,
            rate=Decimal("0.2"),
            cost_eur=(Decimal("0.5") + Decimal(n % 11) / 10) * Decimal("0.2"),
            tax_eur=Decimal("0"),
        )
        for n, meter in enumerate(meters)
        for hour in range(3)
    )
    return [household.pk for household in households]


def books(household_ids: list[int]) -> list[str]:
    """What must hold after any crash or race: each household at most once, numbers 1..n with no gap or
    repeat, the counter at n, each statement whole (lines add up) with exactly one delivery and exactly one
    VERI*FACTU registro de alta, and the issuer's chain of records whole (no record without its statement)."""
    problems = []
    statements = Statement.objects.filter(household_id__in=household_ids, month=OCTOBER)
    twice = statements.values("household_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    if twice:
        problems.append(f"{twice} households have more than one statement")
    numbers = sorted(statements.values_list("number", flat=True))
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"numbers are not 1..{len(numbers)}: {numbers[:20]}...")
    counter = SeriesCounter.objects.filter(series__code="EP", year=2026).values_list("last_number", flat=True).first()
    if (counter or 0) != len(numbers):
        problems.append(f"the counter says {counter}, {len(numbers)} statements exist")
    lines = dict(statements.annotate(s=Sum("lines__amount_eur")).values_list("pk", "s"))
    broken = [pk for pk, total in statements.values_list("pk", "total_eur") if (lines[pk] or 0) != total]
    if broken:
        problems.append(f"{len(broken)} statements whose lines do not add up: {broken[:5]}")
    deliveries = StatementDelivery.objects.filter(statement__in=statements).values("statement").annotate(n=Count("pk"))
    if sorted(row["n"] for row in deliveries) != [1] * len(numbers):
        problems.append("not exactly one delivery per statement")
    altas = InvoiceRecord.objects.filter(statement__in=statements, kind="alta")
    altas = altas.values("statement").annotate(n=Count("pk"))
    if sorted(row["n"] for row in altas) != [1] * len(numbers):
        problems.append("not exactly one registro de alta per statement")
    if InvoiceRecord.objects.count() != len(numbers):
        problems.append(f"{InvoiceRecord.objects.count()} records for {len(numbers)} statements")
    for chain in InvoiceRecordChain.objects.all():
        problems += records.verify(chain)
    return problems


def test_two_issuers_at_once_issue_each_household_once_with_gapless_numbers(monkeypatch):
    ids = build_town(60)
    monkeypatch.setattr(issuing, "CHUNK", 7)  # many short transactions, interleaved

    results, errors = at_once(
        lambda: issue_households(ids, OCTOBER, now=NOW), lambda: issue_households(list(reversed(ids)), OCTOBER, now=NOW)
    )

    assert errors == []
    assert sum(tally["issued"] for tally in results) == 60
    assert books(ids) == []
    assert Statement.objects.filter(household_id__in=ids).count() == 60


def test_an_issuer_that_rolls_back_beside_another_leaves_no_gap(monkeypatch):
    ids = build_town(40)
    monkeypatch.setattr(issuing, "CHUNK", 5)
    failing = threading.local()
    real = issuing.issued

    def issued(statements, **kwargs):
        real(statements, **kwargs)
        if getattr(failing, "on", False):
            raise RuntimeError("this issuer's transaction fails after its inserts")

    monkeypatch.setattr(issuing, "issued", issued)

    def doomed():
        failing.on = True
        return issue_households(ids[:20], OCTOBER, now=NOW)

    # The other issuer starts from the other end: the doomed one's first chunk is still free when it gets there.
    _, errors = at_once(doomed, lambda: issue_households(list(reversed(ids)), OCTOBER, now=NOW))

    assert [type(error) for error in errors] == [RuntimeError]
    assert books(ids) == []
    assert Statement.objects.filter(household_id__in=ids).count() == 40


def start_child(log, **env: str) -> subprocess.Popen:
    with log.open("a") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.payments.statements.crashkit", "issue", OCTOBER.isoformat(), str(CHUNK)],
            cwd=settings.BASE_DIR,
            env=crashkit.child_env(**env),
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    ready, _, _ = select.select([child.stdout], [], [], READY_TIMEOUT)
    line = child.stdout.readline() if ready else ""
    if line.strip() != "ready":
        stop(child)
        raise AssertionError(f"the child did not start: {line!r}; see {log}")
    return child


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.kill()
    child.wait(timeout=10)
    child.stdout.close()


@pytest.mark.timeout(240)
def test_kill_9_at_any_point_of_a_run_then_a_restart_issues_each_household_once_without_gaps(tmp_path):
    seed = int(os.environ.get("CRASH_SEED") or secrets.randbits(32))
    rng = random.Random(seed)
    ids = build_town(HOUSEHOLDS)
    log = tmp_path / "children.log"
    chunks = -(-HOUSEHOLDS // CHUNK)

    left = []
    for point in POINTS:
        child = start_child(log, CRASH_AT=f"{point}:{rng.randint(1, 3)}")
        try:
            child.wait(timeout=RUN_TIMEOUT)
            assert child.returncode == -signal.SIGKILL, f"the child was to die at {point}: {child.returncode}"
        finally:
            stop(child)
        issued = Statement.objects.filter(household_id__in=ids).count()
        left.append((point, issued))
        assert books(ids) == [], f"CRASH_SEED={seed}, killed at {point}"
    for _ in range(RANDOM_KILLS):
        child = start_child(log)
        try:
            time.sleep(rng.uniform(0.05, 0.6))
        finally:
            stop(child)
        left.append(("random", Statement.objects.filter(household_id__in=ids).count()))
        assert books(ids) == [], f"CRASH_SEED={seed}, killed after a random delay, left {left}"

    tally = issue_households(ids, OCTOBER, now=NOW)  # the restarted run
    assert books(ids) == [], f"CRASH_SEED={seed}"
    assert Statement.objects.filter(household_id__in=ids).count() == HOUSEHOLDS
    assert tally["issued"] + tally["already_issued"] == HOUSEHOLDS
    # Killed before its commit, a chunk left nothing: each kill cost at most the chunk it was in.
    assert all(issued % CHUNK == 0 for point, issued in left if point != "random"), left
    assert left[0][1] < HOUSEHOLDS and chunks > 3, left
