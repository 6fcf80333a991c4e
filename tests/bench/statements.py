"""Monthly statements issued per second on PostgreSQL, beside the ledger reads they cannot do without, in the same run.

1. Setup, each step timed: ``--statement-households`` households (user, meter, wallet with one coin,
   a flat tariff with a standing charge) in Europe/Madrid; for the last closed month, one energy and
   one standing-charge line per household and hour for its first ``--statement-days`` days (set-based
   SQL, ``generate_series``); the first two thirds of those days settled by
   ``--statement-settlements-per-day`` settlements a day per household, each with its settlement
   lines (what hourly settlement leaves behind, in bulk).
2. Ceiling: the reads issuing needs for every household, chunk by chunk as issuing does them (the
   month's usage grouped, ``payments.statements.lines.usage_groups``, and the payments that paid it,
   ``payments.statements.paid.month_payments``): half before the figure, half after, so load from
   other processes weighs on both.
3. Figure: ``issuing.issue_households(all ids, month)`` in this process, one worker: statements/s.
   Each statement is composed, numbered under the series counter's lock and written with its lines,
   payments and mail delivery.
4. Checks: one statement per household, numbers 1..N without a gap, every total equal to its
   household's ledger rounded once, a second run issues nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

from tests.bench.harness import OUTPUT_DIR
from tests.bench.report import Row, say

# A month's statements for 10 million households within the 6 hours after the month ends takes ~460/s
# across all workers; one worker doing 500/s leaves the rest of them for settlement.
GOAL_PER_SECOND = 500
TZ = "Europe/Madrid"
RATE = Decimal("0.25")
STANDING_PER_DAY = Decimal("0.35")
BSV_EUR = Decimal("30")
BATCH = 2_000
CHUNK = 200  # the chunk issuing works in (payments.statements.issuing.CHUNK)
LOG_FILE = OUTPUT_DIR / "statements.log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("statements")
    group.add_argument(
        "--statement-households", type=int, default=10_000, help="households issued a statement (default 10,000)"
    )
    group.add_argument(
        "--statement-days", type=int, default=31, help="days of hourly lines in the month (default 31: all of it)"
    )
    group.add_argument(
        "--statement-settlements-per-day",
        type=int,
        default=1,
        choices=[1, 2, 3, 4, 6, 8, 12, 24],
        help="settlements a day that paid the settled part (default 1; hourly settlement leaves 24)",
    )


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    from django.utils import timezone

    from lib.periods import add_months, first_of_month, local_date, local_month_bounds

    count = options.statement_households
    now = timezone.now()
    month = add_months(first_of_month(local_date(now, TZ)), -1)
    start, end = local_month_bounds(month, TZ)
    days = min(options.statement_days, (end - start).days)
    per_day = options.statement_settlements_per_day
    say(
        f"setup: {count:,} households, {month:%B %Y} ({TZ}), hourly lines for {days} days, "
        f"{per_day} settlement(s) a day for the first two thirds"
    )
    setup = _Setup(count, start, start + timedelta(days=days), per_day)
    setup.build()
    ids = setup.household_ids
    chunks = [ids[first : first + CHUNK] for first in range(0, len(ids), CHUNK)]

    say("ceiling: the ledger reads of every chunk (usage grouped, payments), first half ...")
    first = _reads(chunks[: len(chunks) // 2], start, end)
    say(f"figure: issuing.issue_households over {count:,} households, in this process ...")
    with _log_to_file():
        began, cpu = time.perf_counter(), time.process_time()
        tally = _issue(ids, month, end)
        figure_seconds, figure_cpu = time.perf_counter() - began, time.process_time() - cpu
    say(f"  {figure_seconds:.2f} s: {count / figure_seconds:,.0f} statements/s ({dict(tally)})")
    say("ceiling: second half ...")
    second = _reads(chunks[len(chunks) // 2 :], start, end)
    ceiling_seconds = first["seconds"] + second["seconds"]
    say(f"  {ceiling_seconds:.2f} s in all: {count / ceiling_seconds:,.0f} households/s read")

    say("checks ...")
    checks = _check(ids, month, start, end, tally)
    problems = [f"WARNING statements: {problem}" for problem in checks["problems"]]
    for problem in problems:
        say(problem)
    if not problems:
        say("  one statement each, numbers 1..N, every total the ledger's to the cent, a second run issued nothing")

    figure = count / figure_seconds
    ceiling = count / ceiling_seconds
    rows = [
        Row(
            f"statements: issued/s, 1 worker ({count:,}; {days} days, {per_day}/day paid)",
            figure,
            "statements/s",
            "the ledger reads alone",
            ceiling,
            "households/s",
            goal=0,
            min_figure=GOAL_PER_SECOND,
        )
    ]
    lines_per = setup.usage_rows / count
    notes = [
        f"Statements: {lines_per:,.0f} usage lines and {setup.payments / count:,.0f} payments per household; "
        f"{1000 * figure_seconds / count:.2f} ms per statement ({1000 * figure_cpu / count:.2f} ms CPU in the "
        f"issuing process), of which the ledger reads take {1000 * ceiling_seconds / count:.2f} ms "
        f"(ratio {figure / ceiling:.1%}). Breakdown: var/bench/statements.json.",
        *problems,
    ]
    data = {
        "notes": notes,
        "config": {
            "households": count,
            "month": f"{month:%Y-%m}",
            "days_with_lines": days,
            "settlements_per_day": per_day,
            "usage_rows": setup.usage_rows,
            "settlements": setup.payments,
            "chunk": CHUNK,
        },
        "setup_seconds": setup.timings,
        "figure": {
            "seconds": figure_seconds,
            "cpu_seconds": figure_cpu,
            "statements_per_second": figure,
            "tally": dict(tally),
        },
        "ceiling": {
            "seconds": ceiling_seconds,
            "households_per_second": ceiling,
            "halves_seconds": [first["seconds"], second["seconds"]],
            "includes": "usage_groups + month_payments per chunk of 200, as issue_chunk runs them",
        },
        "checks": checks,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


class _Setup:
    def __init__(self, count: int, start, lines_end, per_day: int) -> None:
        self.count = count
        self.start = start
        self.lines_end = lines_end
        self.per_day = per_day
        self.timings: dict[str, float] = {}
        self.household_ids: list[int] = []
        self.usage_rows = 0
        self.payments = 0

    def build(self) -> None:
        began = time.perf_counter()
        with self._step("households: users, households, meters (bulk)"):
            self._households()
        with self._step("wallets and one coin each"):
            self._wallets()
        with self._step("partitions for the month, as before loading history in bulk"):
            from django.utils import timezone

            from meters.partitions import ensure_partitions

            ensure_partitions(timezone.now(), since=self.start)
        with self._step("usage: an energy and a standing line per household and hour (INSERT ... SELECT)"):
            self._usage()
        # Statistics before the lines are joined to their settlements: without them PostgreSQL
        # expects one settled usage line and plans a nested loop over 9.6 million (tens of minutes).
        with self._step("ANALYZE usage"):
            self._analyze("meters_hourlyusage")
        with self._step("settlements and their lines for the settled part (INSERT ... SELECT)"):
            self._settlements()
        with self._step("ANALYZE"):
            self._analyze("meters_hourlyusage, payments_settlement, payments_settlementline")
        say(f"  setup took {time.perf_counter() - began:.1f} s")

    @staticmethod
    def _analyze(tables: str) -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {tables}")

    @contextlib.contextmanager
    def _step(self, label: str) -> Iterator[None]:
        began = time.perf_counter()
        yield
        self.timings[label] = round(time.perf_counter() - began, 3)
        say(f"  {label}: {self.timings[label]:.2f} s")

    def _households(self) -> None:
        from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX

        from energypay.accounts.models import User
        from meters.models import Household, Meter, Tariff, TariffVersion

        tag = secrets.token_hex(3)
        tariff = Tariff.objects.create(name=f"Statement bench {tag}")
        self.version = TariffVersion.objects.create(
            tariff=tariff,
            valid_from=self.start - timedelta(days=400),
            kind="flat",
            flat_rate=RATE,
            standing_charge_per_day=STANDING_PER_DAY,
        )
        users = User.objects.bulk_create(
            [User(email=f"stmt-{tag}-{n}@bench.example", password=UNUSABLE_PASSWORD_PREFIX) for n in range(self.count)],
            batch_size=BATCH,
        )
        households = Household.objects.bulk_create(
            [Household(user=u, name=f"Statement bench {n}", tariff=tariff, timezone=TZ) for n, u in enumerate(users)],
            batch_size=BATCH,
        )
        self.household_ids = [household.pk for household in households]
        Household.objects.filter(pk__in=self.household_ids).update(created_at=self.start - timedelta(days=400))
        Meter.objects.bulk_create(
            [Meter(serial=f"STB-{tag}-{n:07d}", household=h) for n, h in enumerate(households)], batch_size=BATCH
        )

    def _wallets(self) -> None:
        from django.db import connection

        from payments.models import PriceQuote
        from payments.wallets import open_missing_wallets

        open_missing_wallets()
        PriceQuote.objects.create(source="fixed", bsv_eur=BSV_EUR, fetched_at=self.start)
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO payments_utxo (wallet_id, txid, vout, satoshis, raw_parent, state, confirmed,
                                           created_at, updated_at)
                SELECT w.id, md5('coin' || w.id) || md5('bench' || w.id), 0, 100000000, '00', 'available', true,
                       %s, %s
                FROM payments_wallet w WHERE w.household_id = ANY(%s)
                """,
                [self.start, self.start, self.household_ids],
            )

    def _usage(self) -> None:
        from django.db import connection

        hour_share = (STANDING_PER_DAY / 24).quantize(Decimal("0.000001"))
        settled_until = self.start + (self.lines_end - self.start) * 2 / 3
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO meters_hourlyusage (household_id, meter_id, kind, hour_start, seq, kwh, tariff_version_id,
                                                rate, cost_eur, tax_rate, tax_eur, settled_at, updated_at)
                SELECT m.household_id, line.meter_id, line.kind, h, 0, line.kwh, %(version)s, line.rate,
                       line.cost, 0, 0,
                       CASE WHEN h < %(settled_until)s THEN h + interval '65 minutes' END, now()
                FROM meters_meter m
                CROSS JOIN generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour',
                                           interval '1 hour') AS h
                CROSS JOIN LATERAL (
                    SELECT 'energy' AS kind, m.id AS meter_id, e.kwh, %(rate)s::numeric AS rate,
                           round(e.kwh * %(rate)s, 6) AS cost
                    FROM (SELECT (0.1 + ((extract(epoch FROM h)::bigint / 3600 + m.id) %% 7) * 0.05)::numeric
                          AS kwh) e
                    UNION ALL
                    SELECT 'standing', NULL, 0, NULL, %(share)s::numeric
                ) line
                WHERE m.household_id = ANY(%(ids)s)
                """,
                {
                    "version": self.version.pk,
                    "settled_until": settled_until,
                    "start": self.start,
                    "end": self.lines_end,
                    "rate": RATE,
                    "share": hour_share,
                    "ids": self.household_ids,
                },
            )
            self.usage_rows = cursor.rowcount

    def _settlements(self) -> None:
        from django.db import connection

        from payments.models import PriceQuote

        quote = PriceQuote.objects.order_by("-pk").values_list("pk", flat=True).first()
        bucket = 86_400 // self.per_day
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO payments_settlement (txid, raw_tx, state, detail, broadcast_attempts, updated_at,
                    household_id, period_start, period_end, kwh, eur, quote_id, satoshis, fee_satoshis,
                    created_at, confirmed_at)
                SELECT md5(u.household_id || '-' || b) || md5('bench-' || u.household_id || '-' || b), '00',
                       'confirmed', '', 1, now(), u.household_id, min(u.hour_start),
                       max(u.hour_start) + interval '1 hour', sum(u.kwh), sum(u.cost_eur), %(quote)s,
                       greatest(1, round(sum(u.cost_eur) * 100000000 / %(price)s))::bigint, 100,
                       max(u.settled_at), max(u.settled_at)
                FROM meters_hourlyusage u
                CROSS JOIN LATERAL (SELECT floor(extract(epoch FROM u.hour_start - %(start)s) / %(bucket)s) AS b) k
                WHERE u.household_id = ANY(%(ids)s) AND u.settled_at IS NOT NULL AND u.hour_start >= %(start)s
                GROUP BY u.household_id, b
                """,
                {"quote": quote, "price": BSV_EUR, "start": self.start, "bucket": bucket, "ids": self.household_ids},
            )
            self.payments = cursor.rowcount
            cursor.execute(
                """
                INSERT INTO payments_settlementline (settlement_id, usage_id, household_id, eur, released)
                SELECT s.id, u.id, s.household_id, u.cost_eur, false
                FROM payments_settlement s
                JOIN meters_hourlyusage u ON u.household_id = s.household_id
                    AND u.hour_start >= s.period_start AND u.hour_start < s.period_end
                    AND u.settled_at IS NOT NULL
                WHERE s.household_id = ANY(%(ids)s)
                """,
                {"ids": self.household_ids},
            )


def _reads(chunks: list[list[int]], start, end) -> dict:
    from payments.statements.lines import usage_groups
    from payments.statements.paid import month_payments

    began = time.perf_counter()
    for chunk in chunks:
        usage_groups(chunk, start, end)
        month_payments(chunk, start, end)
    return {"seconds": time.perf_counter() - began}


def _issue(ids: list[int], month, end):
    from payments.statements import issuing

    return issuing.issue_households(ids, month, now=end + timedelta(hours=7))


def _check(ids: list[int], month, start, end, tally) -> dict:
    from django.db import connection

    from payments.statements.models import Statement

    problems = []
    statements = Statement.objects.filter(household_id__in=ids, month=month, revision=0)
    issued = statements.count()
    if issued != len(ids) or tally.get("issued") != len(ids):
        problems.append(f"{issued} statements for {len(ids)} households (the run said {dict(tally)})")
    numbers = sorted(statements.values_list("number", flat=True))
    if numbers and numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        problems.append("the numbers have a gap or a repeat")
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT u.household_id, round(sum(u.cost_eur + u.tax_eur), 2)
            FROM meters_hourlyusage u
            WHERE u.household_id = ANY(%s) AND u.hour_start >= %s AND u.hour_start < %s
            GROUP BY u.household_id
            """,
            [ids, start, end],
        )
        ledger = dict(cursor.fetchall())
    totals = dict(statements.values_list("household_id", "total_eur"))
    wrong = [h for h in ids if totals.get(h) != ledger.get(h)]
    if wrong:
        problems.append(f"{len(wrong)} statements whose total is not the ledger's, e.g. household {wrong[0]}")
    with _log_to_file():
        again = _issue(ids, month, end)
    if again.get("issued"):
        problems.append(f"a second run issued {again['issued']}")
    return {"problems": problems, "statements": issued, "second_run": dict(again)}


@contextlib.contextmanager
def _log_to_file() -> Iterator[None]:
    root = logging.getLogger()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = saved
        handler.close()
