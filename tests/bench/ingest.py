"""Meter ingest throughput against gunicorn and PostgreSQL, beside its ceilings measured in the same run.

1. Single-reading POSTs per second (wrk, a new in-order reading per request, rotating over
   ``SINGLE_METERS`` meters) beside a bare Django JSON view served by the same gunicorn (goal 35%).
   Their p50 latencies are reported side by side.
2. Readings per second in 1,000-reading batches (``--ingest-processes`` client processes, each posting
   consecutive 1,000-minute runs for its own meters) beside raw PostgreSQL COPY of the same rows into
   a copy of the readings table (its columns, indexes, constraints and foreign keys), in 1,000-row
   COPYs each committed, with as many processes (goal 35%).
3. SQL statements and Redis commands per request, counted in-process with the Django test client.
4. CPU per request or per 1,000 readings: the gunicorn workers, their PostgreSQL backends and the
   clients (wrk, the batch and COPY processes), read from /proc around each measured round. Other
   processes on the machine slow every figure but barely move these: on a busy machine their ratio
   says what the throughput ratio would be on free cores (a note, not a goal).

Figure and ceiling alternate in ``--rounds`` rounds, so load from other processes on the machine
weighs on both alike; each figure is the total over its rounds.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import pstats
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import requests

from tests.bench.harness import DATABASE_URL, OUTPUT_DIR, backend_pids, cpu_seconds, gunicorn_server, wrk
from tests.bench.procmem import children
from tests.bench.report import Row, say

SINGLE_GOAL = 0.35
BATCH_GOAL = 0.35
SINGLE_METERS = 64
BATCH_METERS = 32
BATCH_SIZE = 1000
BATCH_WARMUP = 2  # batches per process before the clock starts
BATCH_MAX = 150  # batches per process and round built in advance: more than a round can post
WATTS = 3000  # every meter draws a steady 3 kW: 0.050 kWh per one-minute step
START_REGISTER_MILLI = 1_000_000  # 1,000.000 kWh
LUA_SCRIPT = Path(__file__).with_name("readings.lua")
COPY_TABLE = "bench_copy_reading"

# Meters report at one-minute steps from this far back, so no reading is ever in the future.
HISTORY = timedelta(days=300)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("ingest")
    group.add_argument("--ingest-connections", type=int, default=8, help="wrk connections (default 8)")
    group.add_argument("--ingest-processes", type=int, default=4, help="batch client processes (default 4)")


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    start_epoch = int((datetime.now(UTC) - HISTORY).timestamp()) // 60 * 60
    single_meters, batch_meters, probe_token = _create_meters()
    config = {
        "gunicorn_workers": options.workers,
        "gunicorn_worker_class": options.worker_class,
        "measured_seconds": options.seconds,
        "rounds": options.rounds,
        "warmup_seconds": options.warmup,
        "wrk_connections": options.ingest_connections,
        "single_meters": SINGLE_METERS,
        "batch_meters": BATCH_METERS,
        "batch_size": BATCH_SIZE,
        "batch_processes": options.ingest_processes,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".tokens") as tokens_file:
        tokens_file.write("\n".join(token for _, token in single_meters) + "\n")
        tokens_file.flush()
        with gunicorn_server(options.workers, options.worker_class) as (base_url, server):
            meter_ids = [meter_id for meter_id, _ in single_meters]
            single = _single_readings(base_url, server.pid, tokens_file.name, meter_ids, start_epoch, options)
            batch = _batches(base_url, server.pid, batch_meters, start_epoch, options)
    say("queries per request (in-process, Django test client)")
    queries = _count_queries(probe_token, start_epoch)
    if options.profile:
        _profile(probe_token, start_epoch)

    rows = [
        Row(
            "ingest: single-reading POSTs",
            single["ingest"]["accepted_per_second"],
            "readings/s",
            "bare Django JSON view",
            single["bare_view"]["requests_per_second"],
            "requests/s",
            SINGLE_GOAL,
        ),
        Row(
            "ingest: readings in 1,000-reading batches",
            batch["ingest"]["readings_per_second"],
            "readings/s",
            "PostgreSQL COPY",
            batch["copy"]["readings_per_second"],
            "rows/s",
            BATCH_GOAL,
        ),
    ]
    redis = queries["single_reading_redis_commands"]
    notes = [
        f"Ingest, per single-reading request: {queries['single_reading_request']} SQL statements "
        f"(BEGIN and COMMIT included; the fast path's statement is its own transaction and its own health "
        f"check, the Python path adds CONN_HEALTH_CHECKS's SELECT 1 under gunicorn), "
        + (f"{len(redis)} Redis commands ({', '.join(redis)}); " if redis else "no Redis command; ")
        + f"per 1,000-reading batch: {queries['batch_request']} SQL statements.",
        f"Ingest, latency p50: single-reading ingest {single['ingest']['latency_p50_ms']:.1f} ms beside the "
        f"bare view's {single['bare_view']['latency_p50_ms']:.1f} ms "
        f"({options.ingest_connections} connections, {options.workers} {options.worker_class} workers).",
        _cpu_note(single, batch),
    ]
    data = {
        "notes": notes,
        "config": config,
        "single": single,
        "batch": batch,
        "queries": queries,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


# --- Data -----------------------------------------------------------------------------------------


def _create_meters() -> tuple[list[tuple[int, str]], list[tuple[int, str]], str]:
    """Single-reading meters' and batch meters' (id, token), and a probe meter's token."""
    meters = flat_meters(SINGLE_METERS + BATCH_METERS + 1, name="Bench", serial="BENCH", email="bench{}@example.com")
    return meters[:SINGLE_METERS], meters[SINGLE_METERS:-1], meters[-1][1]


def flat_meters(count: int, *, name: str, serial: str, email: str) -> list[tuple[int, str]]:
    """``count`` new meters, each in its own household on one flat 0.25 tariff: their (id, token)."""
    from energypay.accounts.models import User
    from meters.models import Household, Meter, Tariff, TariffVersion

    tariff = Tariff.objects.create(name=f"{name} flat 0.25")
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        kind=TariffVersion.Kind.FLAT,
        flat_rate=Decimal("0.250000"),
    )
    meters = []
    for number in range(count):
        user = User.objects.create_user(email.format(number))  # no password: no slow hashing
        household = Household.objects.create(user=user, name=f"{name} {number}", tariff=tariff)
        meter = Meter.objects.create(
            serial=f"{serial}-{number:05d}",
            household=household,
            max_power_kw=Decimal(30),
            installed_at=datetime.now(UTC) - HISTORY - timedelta(days=1),
        )
        meters.append((meter.pk, meter.issue_token()))
    return meters


def _register(step: int) -> str:
    milli = START_REGISTER_MILLI + step * WATTS // 60
    return f"{milli // 1000}.{milli % 1000:03d}"


def _batch_steps(number: int) -> range:
    return range(number * BATCH_SIZE, (number + 1) * BATCH_SIZE)


def _batch_json(start_epoch: int, number: int) -> bytes:
    items = ",".join(
        '{"timestamp": "%s", "energy_kwh": %s}'  # noqa: UP031 (a hot loop building 150k items)
        % (datetime.fromtimestamp(start_epoch + 60 * step, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), _register(step))
        for step in _batch_steps(number)
    )
    return ('{"readings": [' + items + "]}").encode()


def _batch_copy_text(meter_id: int, household_id: int, start_epoch: int, number: int, received: str) -> bytes:
    return "".join(
        "%d\t%d\t%s\t%s\t%s\n"  # noqa: UP031
        % (
            meter_id,
            household_id,
            datetime.fromtimestamp(start_epoch + 60 * step, UTC).strftime("%Y-%m-%d %H:%M:%S+00"),
            _register(step),
            received,
        )
        for step in _batch_steps(number)
    ).encode()


# --- Single readings through wrk ------------------------------------------------------------------


class _Endpoint:
    """One URL under wrk load, measured in rounds; each round carries on where the last stopped."""

    def __init__(
        self,
        base_url: str,
        server_pid: int,
        path: str,
        tokens_path: str,
        meter_ids: list[int],
        start_epoch: int,
        connections: int,
    ) -> None:
        self.url, self.path, self.tokens_path, self.meter_ids = base_url + path, path, tokens_path, meter_ids
        self.server_pid = server_pid
        self.start_epoch, self.connections = start_epoch, connections
        self.counted = path != "/bench/bare"
        self.next_step = 0
        self.warmup: dict = {}
        self.rounds: list[dict] = []

    def load(self, seconds: float, *, measured: bool = True) -> None:
        args = [self.path, str(self.start_epoch), str(self.next_step), self.tokens_path]
        workers, backends = children(self.server_pid), backend_pids()
        with _Cpu(workers + backends) as cpu:
            result = wrk(self.url, LUA_SCRIPT, args, seconds=seconds, connections=self.connections)
        result["cpu_seconds"] = cpu.seconds
        result["cpu_seconds_by_part"] = cpu.by_part({"gunicorn": workers, "postgres": backends})
        if self.counted:
            # Requests in flight when wrk stops may still be stored: counting rows, not answers,
            # reports readings that really were accepted.
            result["accepted"] = _stored_since(self.meter_ids, self.start_epoch + 60 * self.next_step)
        # wrk sent at most `connections` requests it did not see answered: every meter's next
        # reading comes a minute or two after its last.
        self.next_step += (result["requests"] + self.connections) // SINGLE_METERS + 2
        if measured:
            self.rounds.append(result)
        else:
            self.warmup = result

    def summary(self) -> dict:
        seconds = sum(r["seconds"] for r in self.rounds)
        requests = sum(r["requests"] for r in self.rounds)
        summary = {
            "seconds": seconds,
            "requests": requests,
            "requests_per_second": requests / seconds,
            "non_2xx": sum(r["errors_status"] for r in self.rounds),
            "socket_errors": sum(r["errors"] - r["errors_status"] for r in self.rounds),
            "warmup_errors": self.warmup.get("errors", 0),
            "latency_p50_ms": statistics.median(r["latency_p50_us"] for r in self.rounds) / 1000,
            "latency_p99_ms": max(r["latency_p99_us"] for r in self.rounds) / 1000,
            "per_round_per_second": [round(r.get("accepted", r["requests"]) / r["seconds"]) for r in self.rounds],
        }
        if self.counted:
            summary["accepted"] = sum(r["accepted"] for r in self.rounds)
            summary["accepted_per_second"] = summary["accepted"] / seconds
        done = summary.get("accepted", requests)
        summary["cpu_us_per_request"] = 1e6 * sum(r["cpu_seconds"] for r in self.rounds) / done if done else None
        summary["cpu_us_per_request_by_part"] = {
            part: round(1e6 * sum(r["cpu_seconds_by_part"][part] for r in self.rounds) / done) if done else None
            for part in self.rounds[0]["cpu_seconds_by_part"]
        }
        return summary


def _single_readings(
    base_url: str,
    server_pid: int,
    tokens_path: str,
    meter_ids: list[int],
    start_epoch: int,
    options: argparse.Namespace,
) -> dict:
    """Bare view and ingest, alternated round by round so a change in background load hits both."""
    connections = options.ingest_connections
    bare = _Endpoint(base_url, server_pid, "/bench/bare", tokens_path, meter_ids, start_epoch, connections)
    ingest = _Endpoint(base_url, server_pid, "/api/v1/readings", tokens_path, meter_ids, start_epoch, connections)
    per_round = options.seconds / options.rounds
    say(
        f"single readings: wrk, {options.ingest_connections} connections, {options.warmup:g} s warm-up each, "
        f"then {options.rounds} x {per_round:g} s for the bare view and for ingest, alternated"
    )
    bare.load(options.warmup, measured=False)
    ingest.load(options.warmup, measured=False)
    for number in range(options.rounds):
        for endpoint in (bare, ingest) if number % 2 == 0 else (ingest, bare):
            endpoint.load(per_round)
    result = {"bare_view": bare.summary(), "ingest": ingest.summary()}
    _check_single(result)
    say(f"  per round, bare view: {_rates(result['bare_view']['per_round_per_second'])} requests/s")
    say(f"  per round, ingest:    {_rates(result['ingest']['per_round_per_second'])} readings accepted/s")
    return result


def _rates(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


def _stored_since(meter_ids: list[int], epoch: int) -> int:
    """Readings the round stored: its meters' readings from its first step on.

    A range of the (meter, timestamp) unique index per meter, as long as the round, whatever the
    table holds (``Reading.objects.count()`` scanned the whole table: 660 ms at 10 million rows).
    Every earlier round's readings are older: each round starts past the steps the last one sent.
    """
    from meters.models import Reading

    since = datetime.fromtimestamp(epoch, UTC)
    return Reading.objects.filter(meter_id__in=meter_ids, timestamp__gte=since).count()


def _check_single(result: dict) -> None:
    for name, summary in result.items():
        errors = summary["non_2xx"] + summary["socket_errors"] + summary["warmup_errors"]
        if errors:
            say(
                f"WARNING {name}: {summary['non_2xx']} non-2xx answers, {summary['socket_errors']} socket errors, "
                f"{summary['warmup_errors']} errors in the warm-up (see var/bench/gunicorn.log)"
            )
    ingest = result["ingest"]
    # Up to `connections` requests per round may be stored after wrk stopped counting.
    if abs(ingest["requests"] - ingest["accepted"]) > 0.01 * ingest["requests"] + 50:
        say(f"WARNING ingest: {ingest['requests']} requests answered but {ingest['accepted']} readings stored")


# --- Batches over HTTP, and the same rows by COPY -------------------------------------------------


def _batches(
    base_url: str, server_pid: int, meters: list[tuple[int, str]], start_epoch: int, options: argparse.Namespace
) -> dict:
    """Rounds of HTTP batches, each followed by COPY of exactly the rows it posted."""
    processes = options.ingest_processes
    cursors = [0] * processes  # next batch of each process's plan
    per_round = options.seconds / options.rounds
    say(
        f"1,000-reading batches: {processes} client processes, {options.rounds} x {per_round:g} s, "
        f"each round followed by COPY of the same rows with {processes} processes"
    )
    _create_copy_table()
    url = f"{base_url}/api/v1/readings"
    http_rounds, copy_rounds = [], []
    for number in range(options.rounds):
        warmup = BATCH_WARMUP if number == 0 else 0
        args = [
            (url, [(meters[m][1], n) for m, n in _plan(p, processes, cursor, warmup + BATCH_MAX)], start_epoch)
            for p, cursor in enumerate(cursors)
        ]
        http = _run_processes(
            _post_batches, [(*a, warmup, per_round) for a in args], lambda: children(server_pid) + backend_pids()
        )
        args = [
            (
                [(meters[m][0], n) for m, n in _plan(p, processes, cursor, warmup + report["batches"])],
                start_epoch,
                warmup,
            )
            for p, (cursor, report) in enumerate(zip(cursors, http, strict=True))
        ]
        copy = _run_processes(_copy_batches, args, list)  # each COPY process measures its own backend
        cursors = [cursor + warmup + report["batches"] for cursor, report in zip(cursors, http, strict=True)]
        http_rounds.append(_summarize(http))
        copy_rounds.append(_summarize(copy))

    result = {"ingest": _total(http_rounds), "copy": _total(copy_rounds)}
    result["ingest"]["failures"] = sum(r["failures"] for r in http_rounds)
    result["ingest"]["failure_sample"] = next((r["failure_sample"] for r in http_rounds if r["failure_sample"]), None)
    if result["ingest"]["failures"]:
        say(f"WARNING batches: {result['ingest']['failures']} not fully accepted: {result['ingest']['failure_sample']}")
    if any(count >= BATCH_MAX for r in http_rounds for count in r["batches"]):
        say(f"WARNING batches: a client used all {BATCH_MAX} batches prepared for a round; raise BATCH_MAX")
    say(f"  per round, ingest: {_rates(result['ingest']['per_round_per_second'])} readings/s")
    say(f"  per round, COPY:   {_rates(result['copy']['per_round_per_second'])} readings/s")
    return result


def _plan(process: int, processes: int, first: int, count: int) -> list[tuple[int, int]]:
    """Batches ``first`` to ``first + count`` of a client process, as (batch meter index, batch number).

    Each process posts for its own meters in turn, so no two clients ever wait for one meter's lock,
    and each meter's batches follow one another: consecutive 1,000-minute runs.
    """
    owned = list(range(process, BATCH_METERS, processes))
    return [(owned[j % len(owned)], j // len(owned)) for j in range(first, first + count)]


def _create_copy_table() -> None:
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {COPY_TABLE}")
        # The readings table's columns, defaults, indexes and constraints, and its foreign keys (which
        # LIKE does not copy): every row COPY stores is checked as ingest's rows are.
        connection.execute(f"CREATE TABLE {COPY_TABLE} (LIKE meters_reading INCLUDING ALL)")
        foreign_keys = connection.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'meters_reading'::regclass AND contype = 'f' ORDER BY conname"
        ).fetchall()
        for (definition,) in foreign_keys:
            connection.execute(f"ALTER TABLE {COPY_TABLE} ADD {definition}")


def _run_processes(
    target: Callable[..., dict], args_per_process: list[tuple], serving: Callable[[], list[int]]
) -> list[dict]:
    """``target(*args, barrier)`` in one process per args tuple, in lockstep: each builds its data, waits,
    warms up, waits, then runs the measured phase; return their reports in the order of the args.

    The first report carries ``serving_cpu``: the CPU seconds the ``serving`` processes (gunicorn's
    workers, PostgreSQL backends) used while the clients were measured."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(args_per_process) + 1)
    results = context.Queue()
    from django.db import connections

    connections.close_all()  # children must not share this process's database socket
    processes = [
        context.Process(target=_reporting, args=(index, target, args, barrier, results))
        for index, args in enumerate(args_per_process)
    ]
    for process in processes:
        process.start()
    try:
        barrier.wait(timeout=120)  # data built
        barrier.wait(timeout=120)  # warmed up: the clock starts
        with _Cpu(serving(), children=False) as cpu:
            reports = sorted((results.get(timeout=300) for _ in processes), key=lambda report: report["index"])
        reports[0]["serving_cpu"] = cpu.seconds
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
    failed = [report["error"] for report in reports if report.get("error")]
    if failed:
        raise RuntimeError(f"batch client failed: {failed[0]}")
    return reports


def _reporting(index: int, target: Callable[..., dict], args: tuple, barrier, results) -> None:
    """Run ``target`` in a child process; put its report, or its error, tagged with ``index``."""
    try:
        report = target(*args, barrier)
    except Exception as error:
        barrier.abort()  # rather than leave the parent waiting
        report = {"error": repr(error)}
    results.put({**report, "index": index})


def _summarize(reports: list[dict]) -> dict:
    started = min(report["started"] for report in reports)
    return {
        "cpu_seconds": reports[0].get("serving_cpu", 0) + sum(report["cpu"] for report in reports),
        "seconds": max(report["ended"] for report in reports) - started,
        "readings": sum(report["readings"] for report in reports),
        "batches": [report["batches"] for report in reports],
        "failures": sum(report.get("failures", 0) for report in reports),
        "failure_sample": next((r["failure_sample"] for r in reports if r.get("failure_sample")), None),
    }


def _total(rounds: list[dict]) -> dict:
    seconds = sum(r["seconds"] for r in rounds)
    readings = sum(r["readings"] for r in rounds)
    return {
        "cpu_ms_per_1000": 1e6 * sum(r["cpu_seconds"] for r in rounds) / readings if readings else None,
        "seconds": seconds,
        "readings": readings,
        "readings_per_second": readings / seconds,
        "per_round_per_second": [round(r["readings"] / r["seconds"]) for r in rounds],
        "batches_per_process_per_round": [r["batches"] for r in rounds],
    }


def _post_batches(
    url: str, plan: list[tuple[str, int]], start_epoch: int, warmup: int, seconds: float, barrier
) -> dict:
    """Post the batches of ``plan`` (token, batch number): ``warmup`` of them, then more until time is up."""
    bodies = [(token, _batch_json(start_epoch, number)) for token, number in plan]
    session = requests.Session()

    def post(token: str, body: bytes) -> str | None:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        response = session.post(url, data=body, headers=headers, timeout=120)
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        answer = response.json()
        if answer["accepted"] != BATCH_SIZE:
            return json.dumps(answer)[:300]
        return None

    barrier.wait()
    warmup_failures = [error for token, body in bodies[:warmup] if (error := post(token, body))]
    barrier.wait()
    started, cpu = time.monotonic(), time.process_time()
    deadline = started + seconds
    batches = readings = failures = 0
    sample = warmup_failures[0] if warmup_failures else None
    for token, body in bodies[warmup:]:
        if time.monotonic() >= deadline:
            break
        error = post(token, body)
        batches += 1
        if error:
            failures += 1
            sample = sample or error
        else:
            readings += BATCH_SIZE
    return {
        "started": started,
        "ended": time.monotonic(),
        "cpu": time.process_time() - cpu,
        "batches": batches,
        "readings": readings,
        "failures": failures + len(warmup_failures),
        "failure_sample": sample,
    }


def _copy_batches(plan: list[tuple[int, int]], start_epoch: int, warmup: int, barrier) -> dict:
    """COPY the rows of ``plan`` (meter id, batch number), one committed COPY per batch; time all but ``warmup``."""
    received = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    statement = f"COPY {COPY_TABLE} (meter_id, household_id, timestamp, energy_kwh, received_at) FROM STDIN"
    with psycopg.connect(DATABASE_URL) as connection:
        households = dict(connection.execute("SELECT id, household_id FROM meters_meter").fetchall())
        texts = [
            _batch_copy_text(meter_id, households[meter_id], start_epoch, number, received) for meter_id, number in plan
        ]

        def copy(text: bytes) -> None:
            with connection.cursor() as cursor, cursor.copy(statement) as stream:
                stream.write(text)
            connection.commit()

        barrier.wait()
        for text in texts[:warmup]:
            copy(text)
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        barrier.wait()
        started, cpu, backend_cpu = time.monotonic(), time.process_time(), cpu_seconds([backend]).get(backend, 0)
        for text in texts[warmup:]:
            copy(text)
        ended = time.monotonic()
        cpu = time.process_time() - cpu + cpu_seconds([backend]).get(backend, 0) - backend_cpu
    batches = len(texts) - warmup
    return {"started": started, "ended": ended, "cpu": cpu, "batches": batches, "readings": batches * BATCH_SIZE}


class _Cpu:
    """CPU seconds ``pids`` use while the block runs, plus (``children``) that of child processes it waits
    for (wrk): what one round costs the machine, whichever process spends it."""

    def __init__(self, pids: list[int], *, children: bool = True) -> None:
        self.pids, self.children = pids, children

    def __enter__(self) -> _Cpu:
        self._began = cpu_seconds(self.pids), self._reaped()
        return self

    def __exit__(self, *exc_info) -> None:
        began, reaped = self._began
        ended = cpu_seconds(self.pids)
        # A process that ended meanwhile is left out (its last seconds are unknown): measure those from inside.
        self.used = {pid: ended[pid] - began[pid] for pid in began.keys() & ended.keys()}
        self.reaped = self._reaped() - reaped
        self.seconds = sum(self.used.values()) + self.reaped

    def by_part(self, parts: dict[str, list[int]]) -> dict[str, float]:
        """The seconds split by named groups of pids, and the waited-for children (the clients)."""
        return {name: sum(self.used.get(pid, 0) for pid in pids) for name, pids in parts.items()} | {
            "clients": self.reaped
        }

    def _reaped(self) -> float:
        if not self.children:
            return 0.0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime


def _cpu_note(single: dict, batch: dict) -> str:
    bare, ingest = single["bare_view"]["cpu_us_per_request"], single["ingest"]["cpu_us_per_request"]
    http, copy = batch["ingest"]["cpu_ms_per_1000"], batch["copy"]["cpu_ms_per_1000"]
    if not (bare and ingest and http and copy):
        return "Ingest, CPU per request: not measured (/proc unreadable)."
    return (
        f"Ingest, CPU of gunicorn's workers, PostgreSQL and the clients: bare view {bare:,.0f} us a request, "
        f"single-reading ingest {ingest:,.0f} us a reading (ratio {bare / ingest:.1%}); 1,000-reading batches "
        f"{http:.1f} ms per 1,000 readings, COPY {copy:.1f} ms (ratio {copy / http:.1%}): the throughput "
        "ratios if the CPU were the only limit and no other process used it."
    )


# --- In-process: queries and profile --------------------------------------------------------------


class _Probe:
    """Posts in-order readings for one meter through the Django test client."""

    def __init__(self, token: str, start_epoch: int, first_step: int = 0) -> None:
        from django.test import Client

        self.client = Client(headers={"Authorization": f"Bearer {token}", "Host": "127.0.0.1"})
        self.start_epoch = start_epoch
        self.step = first_step

    def reading(self, step: int) -> dict:
        timestamp = datetime.fromtimestamp(self.start_epoch + 60 * step, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"timestamp": timestamp, "energy_kwh": _register(step)}

    def post(self, count: int = 1) -> None:
        items = [self.reading(step) for step in range(self.step, self.step + count)]
        self.step += count
        body = items[0] if count == 1 else {"readings": items}
        response = self.client.post("/api/v1/readings", json.dumps(body), content_type="application/json")
        if response.status_code != 200 or response.json()["accepted"] != count:
            raise RuntimeError(f"in-process ingest failed: {response.status_code} {response.content[:300]!r}")


def _count_queries(token: str, start_epoch: int) -> dict:
    """Statements (BEGIN and COMMIT included) and Redis commands of the usual single-reading request.

    That is the third reading of a meter, within the hour of the second, so the hour's usage line
    already exists. Under gunicorn, CONN_HEALTH_CHECKS adds a ``SELECT 1`` to each request.
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # Minute 10 of an hour: the next two readings stay in that hour.
    probe = _Probe(token, start_epoch, first_step=(600 - start_epoch) // 60 % 60)
    probe.post()  # the meter's first reading: no previous one, no usage yet
    probe.post()  # creates the hour's usage line
    with CaptureQueriesContext(connection) as single, _RedisCommands() as single_redis:
        probe.post()
    with CaptureQueriesContext(connection) as batch, _RedisCommands() as batch_redis:
        probe.post(BATCH_SIZE)
    return {
        "single_reading_request": len(single),
        "single_reading_redis_commands": single_redis.commands,
        "batch_request": len(batch),
        "batch_redis_commands": batch_redis.commands,
        "single_reading_sql": [query["sql"][:400] for query in single.captured_queries],
    }


class _RedisCommands:
    """Records the Redis commands this process sends while active."""

    def __enter__(self) -> _RedisCommands:
        from redis.client import Redis

        self.commands: list[str] = []
        self._original = original = Redis.execute_command

        def counting(client, *args, **options):
            self.commands.append(str(args[0]))
            return original(client, *args, **options)

        Redis.execute_command = counting
        return self

    def __exit__(self, *exc_info) -> None:
        from redis.client import Redis

        Redis.execute_command = self._original


def _profile(token: str, start_epoch: int, requests_count: int = 500) -> None:
    probe = _Probe(token, start_epoch, first_step=10_000)  # after the readings _count_queries posted
    probe.post()
    for label, count, size in (("single-reading", requests_count, 1), ("1,000-reading batch", 20, BATCH_SIZE)):
        profiler = cProfile.Profile()
        began = time.perf_counter()
        profiler.enable()
        for _ in range(count):
            probe.post(size)
        profiler.disable()
        elapsed = time.perf_counter() - began
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        dump = OUTPUT_DIR / f"ingest-{'single' if size == 1 else 'batch'}.prof"
        profiler.dump_stats(dump)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)
        print(f"\n=== profile: {count} {label} requests in-process, {elapsed / count * 1000:.2f} ms each ({dump})")
        print(out.getvalue())
