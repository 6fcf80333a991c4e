"""Ingest and the usage chart with 10 million readings stored, beside the same figures on a database without them.

Run with ``--scale`` (or by name, ``scale``); it takes a few minutes more than the default run.

1. Setup: a fresh migrated database ``<bench>_empty`` gets what is measured: ``SINGLE_METERS`` meters
   for single-reading ingest (each in its own household, one flat tariff) and the dashboard
   benchmark's households (a year and a week of history on a time-of-use tariff), logged in; and
   month partitions from two years back (``ensure_partitions --since``). Its copy ``<bench>_10m``
   (``CREATE DATABASE ... TEMPLATE``) then gets, timed: 10,000,000 readings by COPY, hour by hour
   as meters send them: a year of hourly readings for ``YEAR_METERS`` meters (the ingest meters
   among them, their year ending where the measured readings begin) and 15-minute readings of the
   last week for ``FILLER_METERS`` more; then the year meters' hourly ledger, set-based in SQL (one
   priced energy line per hour, all settled but the last two hours), and VACUUM ANALYZE.
2. Figures, round by round alternating the two databases (two gunicorns, one per database, for
   ingest; the Django connection switched for the chart): single-reading POSTs through wrk as in
   the ingest benchmark, and the chart partial of the year household in process, cache hit and cache
   miss (after its usage version is raised). Goal: each >= 90% of the empty database's figure.
3. Plans: on the 10 million readings, every statement of the hot paths runs under auto_explain
   (ANALYZE, BUFFERS, nested statements, so a PL/pgSQL ingest shows its statements too): an
   in-order reading, an out-of-order one, a 1,000-reading batch, the chart partial of a year
   meter's household for each range, the dashboard page, the hourly run's owing query and a settled
   chunk. Reported per statement: the scans of the readings and ledger, their indexes, and the
   partitions read of those the table has; the row fails when any sequential scan reads a table or
   partition of more than ``BIG_ROWS`` rows.

Meters' foreign keys are not checked while the generated rows load (``session_replication_role =
replica``): the rows are right by construction, and the checks would triple the load time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg

from tests.bench import dashboard, harness
from tests.bench.ingest import HISTORY, SINGLE_METERS, _Endpoint, flat_meters
from tests.bench.report import Row, say

GOAL = 0.9  # a figure on 10 million readings, at least 90% of the same on a database without them
READINGS = 10_000_000
YEAR_METERS = 1000
YEAR_HOURS = 8760
FILLER_METERS = 2000
FILLER_READINGS = (READINGS - YEAR_METERS * YEAR_HOURS) // FILLER_METERS  # 620 quarter-hours, ~6.5 days
OPEN_HOURS = 2  # the ledger's last hours left unsettled, as at HH:05 before the run
BIG_ROWS = 10_000  # a sequential scan of a table or partition larger than this fails the plans row
EXPLAIN_CHUNK = 20  # households of the explained settlement chunk (funded through the local ledger)
RATE = Decimal("0.25")
LOADERS = 2  # connections loading the generated rows at once (PostgreSQL does one COPY per backend on one core)
BIG_TABLES = ("meters_reading", "meters_hourlyusage", "payments_settlementline", "payments_settlement")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale")
    group.add_argument("--scale", action="store_true", help="also run the 10-million-reading benchmark (scale)")
    group.add_argument(
        "--scale-seconds",
        type=float,
        default=24,
        help="measured seconds of single-reading ingest per database, over all rounds (default 24)",
    )


def names(options: argparse.Namespace) -> tuple[str, str]:
    return f"{harness.DB_NAME}_empty", f"{harness.DB_NAME}_10m"


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    empty, full = names(options)
    try:
        return _run(options, empty, full)
    finally:
        harness.use_database(harness.DB_NAME)
        if not options.keep_db:
            for name in (empty, full):
                harness.drop_database(name)


def _run(options: argparse.Namespace, empty: str, full: str) -> tuple[list[Row], dict]:
    began = time.perf_counter()
    start_epoch = int((datetime.now(UTC) - HISTORY).timestamp()) // 60 * 60
    say(f"setup: {empty} (the measured meters and households) ...")
    base = _setup_empty(empty)
    say(f"  {base['seconds']:.1f} s")
    harness.copy_database(full, empty)
    harness.use_database(full)
    say(f"generating {READINGS:,} readings (COPY) and their hourly ledger (SQL) in {full} ...")
    generated = _generate(full, base, start_epoch)
    say(
        f"  {generated['readings']:,} readings in {generated['copy_seconds']:.0f} s, "
        f"{generated['usage_lines']:,} usage lines in {generated['ledger_seconds']:.0f} s, "
        f"VACUUM ANALYZE {generated['vacuum_seconds']:.0f} s: {generated['seconds']:.0f} s in all; "
        f"{generated['database_size']} on disk"
    )

    ingest = _ingest(options, base, start_epoch, empty, full)
    chart = _chart(options, base, empty, full)
    say("plans of the hot statements on the 10 million readings (auto_explain: ANALYZE, BUFFERS) ...")
    harness.use_database(full)
    plans = _plans(base, generated)
    for line in plans["summary"]:
        say(f"  {line}")

    rows = [
        Row(
            "scale: single-reading ingest, 10M readings stored",
            ingest[full]["accepted_per_second"],
            "readings/s",
            "the same, empty database",
            ingest[empty]["accepted_per_second"],
            "readings/s",
            GOAL,
        ),
        Row(
            "scale: chart partial (cache miss), 10M readings stored",
            1000 / chart["miss_full"]["median_ms"],
            "pages/s",
            "the same, empty database",
            1000 / chart["miss_empty"]["median_ms"],
            "pages/s",
            GOAL,
        ),
        Row(
            "scale: chart partial (cache hit), 10M readings stored",
            1000 / chart["hit_full"]["median_ms"],
            "pages/s",
            "the same, empty database",
            1000 / chart["hit_empty"]["median_ms"],
            "pages/s",
            GOAL,
        ),
        Row(
            "scale: hot statements with no sequential scan of a big table",
            plans["clean"],
            "statements",
            "statements explained",
            plans["statements"],
            "statements",
            1.0,
        ),
    ]
    notes = [
        f"Scale: {generated['readings']:,} readings generated by COPY in {generated['copy_seconds']:.0f} s "
        f"({generated['readings'] / generated['copy_seconds']:,.0f} rows/s) and {generated['usage_lines']:,} "
        f"hourly usage lines in SQL in {generated['ledger_seconds']:.0f} s, VACUUM ANALYZE "
        f"{generated['vacuum_seconds']:.0f} s ({generated['database_size']}; {generated['partitions']}).",
        f"Scale, median ms empty / 10M: chart partial cache miss {chart['miss_empty']['median_ms']:.2f} / "
        f"{chart['miss_full']['median_ms']:.2f}, cache hit {chart['hit_empty']['median_ms']:.2f} / "
        f"{chart['hit_full']['median_ms']:.2f}; single-reading ingest p50 latency "
        f"{ingest[empty]['latency_p50_ms']:.1f} / {ingest[full]['latency_p50_ms']:.1f} ms.",
        "Scale, plans on 10M readings (statement: scans; partitions read of the table's): "
        + " | ".join(plans["summary"]),
    ]
    data = {
        "notes": notes,
        "config": {
            "readings": READINGS,
            "year_meters": YEAR_METERS,
            "filler_meters": FILLER_METERS,
            "filler_readings_per_meter": FILLER_READINGS,
            "scale_seconds": options.scale_seconds,
            "rounds": options.rounds,
            "big_rows": BIG_ROWS,
        },
        "generated": {key: value for key, value in generated.items() if key != "year_meter_ids"},
        "ingest": ingest,
        "chart": chart,
        "plans": plans,
        "seconds": time.perf_counter() - began,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


# --- Setup: what is measured, in the empty database ------------------------------------------------


def _setup_empty(name: str) -> dict:
    from django.core.management import call_command
    from django.utils import timezone

    from meters.partitions import ensure_partitions

    began = time.perf_counter()
    harness.drop_database(name)
    harness.copy_database(name, "template1")
    harness.use_database(name)
    call_command("migrate", verbosity=0, interactive=False)
    now = timezone.now()
    # Months from before the ingest meters' year of history: the generated rows go to their months.
    ensure_partitions(now, interval="month", since=now - HISTORY - timedelta(days=400))
    meters = flat_meters(SINGLE_METERS, name="Scale", serial="SCALE", email="scale{}@example.com")
    households = dashboard._setup()
    client = dashboard._client(households["year_user"])  # its session row goes into the copy too
    return {
        "seconds": time.perf_counter() - began,
        "meters": meters,
        "client": client,
        "year_household_id": households["year_household_id"],
    }


# --- Generating 10 million readings and their ledger ----------------------------------------------


def _energy_milli(index: int, hour: int) -> int:
    """Wh in a year meter's hour (10 to 28); _LEDGER computes the same in SQL."""
    return 10 + ((7 * hour + index) % 10) * 2


def _register_at(index: int, end_milli: int, hour: int) -> int:
    """A year meter's register (milli-kWh) at its ``hour``-th reading (0 to YEAR_HOURS - 1), ending at ``end_milli``."""
    return end_milli - sum(_energy_milli(index, later) for later in range(hour, YEAR_HOURS - 1))


def _kwh(milli: int) -> str:
    return f"{milli // 1000}.{milli % 1000:03d}"


def _generate(name: str, base: dict, start_epoch: int) -> dict:
    """The 10 million readings and the year meters' ledger, into ``name``; timed."""
    from django.utils import timezone

    from lib.periods import floor_hour
    from meters.models import Meter, TariffVersion

    began = time.perf_counter()
    now = timezone.now()
    this_hour = floor_hour(now)
    ingest_ids = [meter_id for meter_id, _ in base["meters"]]
    year_ids = ingest_ids + _new_meters(YEAR_METERS - len(ingest_ids), "YEAR", now)
    filler_ids = _new_meters(FILLER_METERS, "FILL", now)
    households = dict(Meter.objects.filter(pk__in=year_ids + filler_ids).values_list("pk", "household_id"))
    version = TariffVersion.objects.filter(tariff__name="Scale flat 0.25").values_list("pk", flat=True).get()
    # The ingest meters' year ends an hour before the first measured reading (1,000.000 kWh), 0.1 kWh
    # below it; the others' year ends at this hour.
    ingest_end = datetime.fromtimestamp(start_epoch, UTC)
    ends = [ingest_end if n < len(ingest_ids) else this_hour for n in range(len(year_ids))]
    end_milli = [999_900 if n < len(ingest_ids) else 500_000 + 1000 * n for n in range(len(year_ids))]
    registers = [_register_at(n, end_milli[n], 0) for n in range(len(year_ids))]  # then each hour's energy on top
    prefixes = [f"{meter_id}\t{households[meter_id]}\t" for meter_id in year_ids]

    received = "\t" + now.strftime("%Y-%m-%d %H:%M:%S+00") + "\n"
    first_slot = this_hour - timedelta(minutes=15 * FILLER_READINGS)

    def copy_readings(connection: psycopg.Connection, part: int) -> None:
        """Every LOADERS-th year and filler meter's readings, hour by hour for all of them, as meters send."""
        year = range(part, len(year_ids), LOADERS)
        filler = filler_ids[part::LOADERS]
        columns = "meter_id, household_id, timestamp, energy_kwh, received_at"
        with connection.cursor() as cursor, cursor.copy(f"COPY meters_reading ({columns}) FROM STDIN") as copy:
            for hour in range(YEAR_HOURS):
                back = timedelta(hours=YEAR_HOURS - hour)
                stamps = [f"{(end - back):%Y-%m-%d %H:%M:%S}+00\t" for end in (ingest_end, this_hour)]
                lines = []
                for n in year:
                    register = registers[n]
                    stamp = stamps[n >= len(ingest_ids)]
                    lines.append(f"{prefixes[n]}{stamp}{register // 1000}.{register % 1000:03d}{received}")
                    registers[n] = register + _energy_milli(n, hour)
                copy.write("".join(lines))
            for slot in range(FILLER_READINGS):
                at = (first_slot + timedelta(minutes=15 * slot)).strftime("%Y-%m-%d %H:%M:%S+00")
                tail = f"\t{at}\t{_kwh(2_000_000 + 25 * slot)}{received}"
                copy.write("".join(f"{meter_id}\t{households[meter_id]}{tail}" for meter_id in filler))

    def build_ledger(connection: psycopg.Connection, part: int) -> int:
        year = range(part, len(year_ids), LOADERS)
        with connection.cursor() as cursor:
            cursor.execute(
                _LEDGER,
                {
                    "meter_ids": [year_ids[n] for n in year],
                    "household_ids": [households[year_ids[n]] for n in year],
                    "indexes": list(year),
                    "first_hours": [ends[n] - timedelta(hours=YEAR_HOURS) for n in year],
                    "open_from": this_hour - timedelta(hours=OPEN_HOURS),
                    "version": version,
                    "rate": RATE,
                },
            )
            return cursor.rowcount

    copy_began = time.perf_counter()
    _in_parallel(name, copy_readings)
    copy_seconds = time.perf_counter() - copy_began
    ledger_began = time.perf_counter()
    usage_lines = sum(_in_parallel(name, build_ledger))
    ledger_seconds = time.perf_counter() - ledger_began
    with _loader(name) as connection:
        # Each meter's latest two readings, as ingest would have left them (its in-order path reads them).
        connection.execute(
            "UPDATE meters_meter m SET last_reading_at = v.last_at, last_register_kwh = v.last_kwh, "
            "previous_reading_at = v.last_at - interval '1 hour', previous_register_kwh = v.previous_kwh "
            "FROM unnest(%s::bigint[], %s::timestamptz[], %s::numeric[], %s::numeric[]) "
            "AS v(id, last_at, last_kwh, previous_kwh) WHERE m.id = v.id",
            [
                year_ids,
                [end - timedelta(hours=1) for end in ends],
                [Decimal(milli) / 1000 for milli in end_milli],
                [Decimal(_register_at(n, end_milli[n], YEAR_HOURS - 2)) / 1000 for n in range(len(year_ids))],
            ],
        )
    if registers != [milli + _energy_milli(n, YEAR_HOURS - 1) for n, milli in enumerate(end_milli)]:
        raise RuntimeError("the generated registers do not end where the meters say they do")

    vacuum_began = time.perf_counter()
    with psycopg.connect(f"{harness.PG_SERVER}/{name}", autocommit=True) as connection:
        for table in ("meters_reading", "meters_hourlyusage", "meters_meter", "meters_household"):
            connection.execute(f"VACUUM ANALYZE {table}")
        size = connection.execute("SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
        partitions = connection.execute(
            "SELECT count(*) FILTER (WHERE inhparent = 'meters_reading'::regclass), "
            "count(*) FILTER (WHERE inhparent = 'meters_hourlyusage'::regclass) FROM pg_inherits"
        ).fetchone()
        counted = connection.execute(
            "SELECT count(*) FROM meters_reading WHERE meter_id = ANY(%s)", [year_ids + filler_ids]
        ).fetchone()[0]
    vacuum_seconds = time.perf_counter() - vacuum_began
    if counted != READINGS:
        raise RuntimeError(f"generated {counted:,} readings, not {READINGS:,}")
    probe = YEAR_METERS // 2  # a year meter whose year ends at this hour
    return {
        "readings": counted,
        "usage_lines": usage_lines,
        "copy_seconds": copy_seconds,
        "ledger_seconds": ledger_seconds,
        "vacuum_seconds": vacuum_seconds,
        "seconds": time.perf_counter() - began,
        "database_size": size,
        "partitions": f"{partitions[0]} partitions of readings and {partitions[1]} of the ledger, defaults included",
        "probe_meter_id": year_ids[probe],
        "probe_register_milli": end_milli[probe],
        "probe_register_73_hours_back_milli": _register_at(probe, end_milli[probe], YEAR_HOURS - 73),
        "this_hour": this_hour.isoformat(),
        "year_meter_ids": year_ids,  # dropped from the report by run()
    }


# The year meters' hourly ledger, set-based: hour by hour for every meter (the order ingest writes it
# in), the energy between each reading and the next, at the flat rate; settled but the last hours.
_LEDGER = """
INSERT INTO meters_hourlyusage (kind, hour_start, seq, kwh, rate, cost_eur, tax_rate, tax_eur, settled_at,
                                updated_at, household_id, meter_id, tariff_version_id)
SELECT 'energy', hour_start, 0, kwh, %(rate)s, kwh * %(rate)s, 0, 0,
       CASE WHEN hour_start < %(open_from)s THEN hour_start + interval '65 minutes' END,
       now(), household_id, meter_id, %(version)s
FROM generate_series(0, 8758) AS h(n)
CROSS JOIN unnest(%(meter_ids)s::bigint[], %(household_ids)s::bigint[], %(indexes)s::int[],
                  %(first_hours)s::timestamptz[]) AS m(meter_id, household_id, i, first_hour)
CROSS JOIN LATERAL (SELECT m.first_hour + h.n * interval '1 hour' AS hour_start,
                           (10 + ((7 * h.n + m.i) %% 10) * 2) / 1000.0 AS kwh) AS line
"""


def _in_parallel(name: str, job) -> list:
    """``job(connection, part)`` for each of LOADERS parts at once, each on its own connection, committed."""
    results: list = [None] * LOADERS
    errors: list[BaseException] = []

    def work(part: int) -> None:
        try:
            with _loader(name) as connection:
                results[part] = job(connection, part)
                connection.commit()
        except BaseException as error:  # re-raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(part,)) for part in range(LOADERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


@contextlib.contextmanager
def _loader(name: str) -> Iterator[psycopg.Connection]:
    """A connection for bulk loading generated rows: foreign-key triggers off, no fsync wait per commit."""
    with psycopg.connect(f"{harness.PG_SERVER}/{name}") as connection:
        connection.execute("SET session_replication_role = replica")
        connection.execute("SET synchronous_commit = off")
        connection.execute("SET maintenance_work_mem = '256MB'")
        yield connection


def _new_meters(count: int, prefix: str, now: datetime) -> list[int]:
    """``count`` meters, each in its own household on the scale tariff; their ids."""
    from energypay.accounts.models import User
    from meters.models import Household, Meter, Tariff

    tariff = Tariff.objects.get(name="Scale flat 0.25")
    users = User.objects.bulk_create(
        [User(email=f"{prefix.lower()}{n}@scale.example.com", password="!") for n in range(count)], batch_size=2000
    )
    households = Household.objects.bulk_create(
        [Household(user=user, name=f"{prefix} {n}", tariff=tariff) for n, user in enumerate(users)], batch_size=2000
    )
    meters = Meter.objects.bulk_create(
        [
            Meter(serial=f"{prefix}-{n:05d}", household=household, installed_at=now - timedelta(days=800))
            for n, household in enumerate(households)
        ],
        batch_size=2000,
    )
    return [meter.pk for meter in meters]


# --- Figures, alternating the two databases -------------------------------------------------------


def _ingest(options: argparse.Namespace, base: dict, start_epoch: int, empty: str, full: str) -> dict:
    """Single-reading POSTs through wrk on each database's gunicorn, alternated round by round."""
    meter_ids = [meter_id for meter_id, _ in base["meters"]]
    per_round = options.scale_seconds / options.rounds
    say(
        f"single-reading ingest: wrk, {options.ingest_connections} connections, {options.rounds} x "
        f"{per_round:g} s per database, alternated"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".tokens") as tokens_file:
        tokens_file.write("\n".join(token for _, token in base["meters"]) + "\n")
        tokens_file.flush()
        with (
            harness.gunicorn_server(options.workers, options.worker_class, database=empty) as empty_server,
            harness.gunicorn_server(options.workers, options.worker_class, database=full) as full_server,
        ):
            connections = options.ingest_connections
            endpoints = {
                db: _Endpoint(
                    url, server.pid, "/api/v1/readings", tokens_file.name, meter_ids, start_epoch, connections
                )
                for db, (url, server) in ((empty, empty_server), (full, full_server))
            }

            def load(db: str, seconds: float, measured: bool = True) -> None:
                harness.use_database(db)  # the round's readings are counted in its database
                endpoints[db].load(seconds, measured=measured)

            for db in (empty, full):
                load(db, options.warmup, measured=False)
            for number in range(options.rounds):
                for db in (empty, full) if number % 2 == 0 else (full, empty):
                    load(db, per_round)
    result = {db: endpoint.summary() for db, endpoint in endpoints.items()}
    for db, summary in result.items():
        say(
            f"  {db}: {summary['accepted_per_second']:,.0f} readings/s, p50 {summary['latency_p50_ms']:.1f} ms "
            f"(per round {', '.join(f'{v:,}' for v in summary['per_round_per_second'])}); "
            f"{summary['non_2xx']} non-2xx"
        )
    return result


def _chart(options: argparse.Namespace, base: dict, empty: str, full: str) -> dict:
    """The year household's chart partial in process, hit and miss, on each database, alternated."""
    from meters.usage import bump_usage_version

    client, household_id = base["client"], base["year_household_id"]
    htmx = {"HTTP_HX_REQUEST": "true"}

    def on(db: str, miss: bool):
        def before() -> None:
            harness.use_database(db)
            if miss:
                bump_usage_version([household_id])

        return before, lambda: client.get("/", **htmx)

    databases = (("empty", empty), ("full", full))
    urls = {f"{kind}_{label}": on(db, kind == "miss") for label, db in databases for kind in ("hit", "miss")}
    per_round = max(1, options.dashboard_requests // options.rounds)
    say(f"chart partial in process: {len(urls)} URLs, {options.rounds} rounds of {per_round} requests each, alternated")
    samples = dashboard._measure(urls, options.rounds, per_round)
    summary = {name: dashboard._summary(timed) for name, timed in samples.items()}
    for name, figures in summary.items():
        say(f"  {name:10} median {figures['median_ms']:6.2f} ms  p95 {figures['p95_ms']:6.2f} ms")
    return summary


# --- Plans ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _explained() -> Iterator[list[dict]]:
    """Every statement this process sends meanwhile, with its plan (auto_explain's, sent back as notices)."""
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    plans: list[dict] = []

    def on_notice(diagnostic) -> None:
        text = diagnostic.message_primary or ""
        if "plan:" in text:
            plans.append(json.loads(text[text.index("{") :]))

    raw.add_notice_handler(on_notice)
    settings = {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_analyze": "on",
        "auto_explain.log_buffers": "on",
        "auto_explain.log_timing": "on",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_format": "json",
        "client_min_messages": "log",
    }
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for name, value in settings.items():
            cursor.execute(f"SET {name} = '{value}'")
    try:
        yield plans
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET auto_explain.log_min_duration = -1")
            cursor.execute("SET client_min_messages = notice")
        raw.remove_notice_handler(on_notice)


def _plans(base: dict, generated: dict) -> dict:
    """Run the hot paths on the 10m database under auto_explain and judge every plan."""
    from django.db import connection

    explained: dict[str, list[dict]] = {}
    failed = []
    for label, path in _hot_paths(base, generated):
        with _explained() as plans:
            try:
                path()
            except Exception as error:  # reported, and the plans row fails: the run goes on
                failed.append(f"{label}: did not run ({error!r:.300})")
        explained[label] = plans
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reltuples, p.relname FROM pg_class c "
            "LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE c.relkind IN ('r', 'p', 'i', 'I') AND c.relnamespace = 'public'::regnamespace"
        )
        tables = {name: (rows, parent) for name, rows, parent in cursor.fetchall()}
    counts: dict[str, int] = {}
    for _, parent in tables.values():
        if parent in BIG_TABLES:
            counts[parent] = counts.get(parent, 0) + 1

    statements, summary, problems = [], [], []
    for label, plans in explained.items():
        for plan in plans:
            scans = list(_scans(plan["Plan"]))
            touched = [
                scan
                for scan in scans
                if scan["type"] != "ModifyTable" and _table_of(scan["relation"], tables) in BIG_TABLES
            ]
            if not touched:
                continue  # no big table read (an INSERT reads none)
            bad = [scan for scan in scans if scan["type"] == "Seq Scan" and _rows(scan["relation"], tables) > BIG_ROWS]
            text = " ".join(plan.get("Query Text", "").split())
            pruned = [scan for scan in scans if scan.get("removed")]
            line = f"{label}: {_describe(text)} -> {_scan_text(touched + pruned, tables, counts)}"
            statements.append({"label": label, "query": text[:2000], "plan": plan, "seq_scans_of_big_tables": bad})
            if line not in summary:
                summary.append(line)
            if bad:
                problems.append(f"{label}: {text[:200]} sequential scan of {', '.join(s['relation'] for s in bad)}")
    for problem in problems:
        say(f"  SEQUENTIAL SCAN OF A BIG TABLE: {problem}")
    for failure in failed:
        say(f"  HOT PATH FAILED: {failure}")
    return {
        "statements": len(statements) + len(failed),
        "clean": sum(1 for statement in statements if not statement["seq_scans_of_big_tables"]),
        "failed": failed,
        "summary": summary,
        "problems": problems,
        "explained": statements,
    }


def _table_of(relation: str, tables: dict) -> str:
    """The partitioned table a partition belongs to, or the relation itself."""
    return tables.get(relation, (0, None))[1] or relation


def _rows(relation: str, tables: dict) -> float:
    return tables.get(relation, (0, None))[0]


def _scans(node: dict) -> Iterator[dict]:
    if "Relation Name" in node:
        yield {
            "type": node["Node Type"],
            "relation": node["Relation Name"],
            "index": node.get("Index Name"),
            "rows": node.get("Actual Rows"),
            "loops": node.get("Actual Loops"),
            "buffers": node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0),
        }
    if node.get("Subplans Removed"):
        yield {"type": "pruned at run time", "relation": "", "index": None, "removed": node["Subplans Removed"]}
    for child in node.get("Plans", []):
        yield from _scans(child)


def _describe(text: str) -> str:
    """The statement's verb and table, enough to tell which one it is."""
    words = text.split()
    verb = words[0].upper() if words else "?"
    for marker in ("FROM", "INTO", "UPDATE"):
        for index, word in enumerate(words[:-1]):
            if word.upper() == marker and words[index + 1].strip('"').startswith(("meters_", "payments_")):
                return f"{verb} {words[index + 1].strip(chr(34))}"
    return verb


def _scan_text(scans: list[dict], tables: dict, counts: dict) -> str:
    # A partition's index is named for its partition; the table's index it belongs to says more.
    kinds = sorted(
        {
            s["type"]
            + (f" using {_table_of(s['index'], tables)}" if s["index"] else "")
            + (" of a small table" if s["type"] == "Seq Scan" and _rows(s["relation"], tables) <= BIG_ROWS else "")
            for s in scans
            if s["relation"]
        }
    )
    by_parent: dict[str, set[str]] = {}
    for scan in scans:
        parent = tables.get(scan["relation"], (0, None))[1]
        if parent in counts:
            by_parent.setdefault(parent, set()).add(scan["relation"])
    read = [f"{len(parts)} of {counts[parent]} partitions of {parent}" for parent, parts in sorted(by_parent.items())]
    if removed := sum(scan.get("removed", 0) for scan in scans):
        read.append(f"{removed} more pruned at run time")
    return "; ".join(kinds[:3] + (["..."] if len(kinds) > 3 else []) + read)


def _hot_paths(base: dict, generated: dict) -> list[tuple[str, object]]:
    """(label, callable) for each hot path, run in this order on the 10m database."""
    from django.test import Client

    from meters.models import Household, Meter
    from tests.bench.ingest import BATCH_SIZE

    probe = Meter.objects.get(pk=generated["probe_meter_id"])
    token = probe.issue_token()
    this_hour = datetime.fromisoformat(generated["this_hour"])
    register = generated["probe_register_milli"]
    meter_client = Client(headers={"Authorization": f"Bearer {token}", "Host": "127.0.0.1"})

    def post(readings: list[tuple[datetime, int]], client: Client = meter_client) -> None:
        body = {"readings": [{"timestamp": f"{t:%Y-%m-%dT%H:%M:%SZ}", "energy_kwh": _kwh(kwh)} for t, kwh in readings]}
        response = client.post("/api/v1/readings", json.dumps(body), content_type="application/json")
        answer = response.json()
        if response.status_code != 200 or answer["accepted"] != len(readings):
            raise RuntimeError(f"explained ingest not accepted: {response.status_code} {str(answer)[:300]}")

    def opening_hours() -> None:
        post([(this_hour, register + 15)])  # the line of the hour before: new
        post([(this_hour + timedelta(seconds=30), register + 16)])  # this hour's line: new

    def within_open_hour() -> None:
        post([(this_hour + timedelta(seconds=60), register + 17)])  # this hour's line: updated

    def out_of_order() -> None:
        # Between two readings three days back: the window query, and an adjustment of a settled hour.
        post([(this_hour - timedelta(hours=72, minutes=30), generated["probe_register_73_hours_back_milli"] + 1)])

    def batch() -> None:
        # 1,000 readings a second apart, after the last reading of another meter (an hour ago).
        other = Meter.objects.filter(last_reading_at=this_hour - timedelta(hours=1)).exclude(pk=probe.pk).first()
        client = Client(headers={"Authorization": f"Bearer {other.issue_token()}", "Host": "127.0.0.1"})
        last = int(other.last_register_kwh * 1000)
        first = this_hour - timedelta(hours=1)
        post([(first + timedelta(seconds=n), last + n // 20) for n in range(1, BATCH_SIZE + 1)], client)

    household = Household.objects.select_related("user").get(pk=probe.household_id)
    page_client = dashboard._client(household.user)

    def chart(range_: str):
        def get() -> None:
            from meters.usage import bump_usage_version

            bump_usage_version([household.pk])  # a cache miss: the queries run
            response = page_client.get(f"/?range={range_}", HTTP_HX_REQUEST="true")
            if response.status_code != 200:
                raise RuntimeError(f"chart {range_}: {response.status_code}")

        return get

    def page() -> None:
        if page_client.get("/").status_code != 200:
            raise RuntimeError("dashboard page failed")

    settle_ids = _fund_chunk(generated)

    def hourly_run() -> None:
        from django.utils import timezone

        from payments.figures import closed_period_end
        from payments.runs import households_owing

        households_owing(closed_period_end(timezone.now()))

    def settle_chunk() -> None:
        from django.utils import timezone

        from payments.figures import closed_period_end
        from payments.runs import settle_households

        tally = settle_households(settle_ids, closed_period_end(timezone.now()))
        if not tally:
            raise RuntimeError("the explained settlement chunk settled nothing")

    paths = [
        ("ingest, in order, opening an hour", opening_hours),
        ("ingest, in order, within the open hour", within_open_hour),
        ("ingest, out of order", out_of_order),
        ("ingest, 1,000-reading batch", batch),
        *((f"chart {r}", chart(r)) for r in ("day", "week", "month", "year")),
        ("dashboard page", page),
        ("hourly run, who owes", hourly_run),
        ("settlement chunk", settle_chunk),
    ]
    return paths


def _fund_chunk(generated: dict) -> list[int]:
    """``EXPLAIN_CHUNK`` year households with a wallet, a confirmed faucet coin and a fresh quote."""
    from django.utils import timezone

    from meters.models import Household
    from payments.models import PriceQuote, Utxo
    from payments.networks.local import LocalLedger
    from payments.wallets import open_wallet

    ids = list(
        Household.objects.filter(meters__pk__in=generated["year_meter_ids"][-EXPLAIN_CHUNK:])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    ledger = LocalLedger()
    for household in Household.objects.filter(pk__in=ids):
        wallet = open_wallet(household)
        ledger.fund(wallet.address, 10_000_000)
        wallet.sync_coins(ledger)
    ledger.mine()
    Utxo.objects.filter(wallet__household_id__in=ids).update(confirmed=True)
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=timezone.now())
    return ids
