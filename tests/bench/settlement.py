"""Hourly settlement throughput on PostgreSQL with the local ledger: one worker and two, beside bare bsv-sdk signing.

1. Setup, each step timed: households (user, meter, flat tariff), their wallets
   (``open_missing_wallets``, which derives every address), one confirmed faucet coin each (the
   first ``FUND_SAMPLE`` through ``LocalLedger.fund`` + ``sync_coins``, timed; the rest built the same
   way in Python and bulk-inserted), one priced energy line each for the closed hour; then ANALYZE,
   as autovacuum keeps a production database's statistics.
2. Figures, in worker processes (``tests/bench/settle_worker.py``: Django set up, the tasks imported,
   a chunk settled to warm up), each chunk settled by ``runs.settle_households`` as the
   ``settle_chunk`` task does. ``--households`` households for each figure, in ``ROUNDS`` rounds that
   alternate (one worker, two workers, one, two...) so that load from other processes weighs on both:
   - one worker: every chunk of the round in one process;
   - two workers: two processes that start together, each taking the round's next chunk when it is
     free (what a broker's queue does for workers that take one task at a time); the round lasts
     until the second one finishes.
   Each household signs a payment, and the local ledger verifies and records it.
   Memory of the first worker, beside the same process idle: peak RSS (VmHWM), RSS sampled every
   50 ms from here during its first round alone, PSS and USS after it.
3. Ceiling: bsv-sdk building, fee-ing, signing and serializing the same transactions (same parent,
   key, amounts and outputs) with pre-derived keys, on one core: half before the figures, half
   after. Deterministic signatures make its txids equal the settlements' txids, which is checked.
4. Checks: every household settled once and ``seen``, the utility received exactly the sum, and a
   second run settles nothing.
5. Where the time goes, on a sample of other households settled in this process with every step
   timed and its SQL counted, summed up as SQL, signing, the ledger's checks and the rest (Python);
   with ``--profile`` also a cProfile of more households (``var/bench/settlement.prof``).

The coins are confirmed (a block is mined after funding), as they are at HH:05 in production,
where the local ledger mines every few minutes and last hour's change is long confirmed.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import logging
import os
import pstats
import secrets
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from bsv import P2PKH, PrivateKey, Script, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte

from tests.bench import procmem
from tests.bench.harness import OUTPUT_DIR, ROOT
from tests.bench.report import Row, say

GOAL_PER_SECOND = 2_000  # households settled per second on one worker (issue 12)
GOAL_TWO_WORKERS = 1.7  # two worker processes on this 2-core machine settle at least 1.7x one (issue 12)
FUNDS = 1_000_000  # satoshis per wallet: about 4.8 EUR at 30 EUR/BSV, 76 hours of the line below
KWH = Decimal("0.25")
RATE = Decimal("0.25")  # EUR/kWh
COST = Decimal("0.0625")  # EUR: KWH * RATE
BSV_EUR = Decimal("30")
FUND_SAMPLE = 100  # wallets funded through LocalLedger.fund + sync_coins, to time the real faucet
STEP_SAMPLE = 1_000  # households settled with every step timed and counted (two chunks)
PROFILE_SAMPLE = 1_000  # households settled under cProfile with --profile
ROUNDS = 2  # rounds of each figure, alternating one worker and two
MEMORY_GOAL = 1.5  # the settling worker's peak RSS at most 1.5x the same process idle: bounded by a chunk
WORKER_TIMEOUT = 900  # seconds for a worker's answer, setup and warm-up included
BATCH = 2_000  # rows per INSERT in the setup
LOG_FILE = OUTPUT_DIR / "settlement.log"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settlement")
    group.add_argument(
        "--households",
        type=int,
        default=10_000,
        help="households settled for each figure, one worker and two (default 10,000 each)",
    )


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    from django.conf import settings
    from django.utils import timezone

    from lib.periods import HOUR, floor_hour
    from payments import runs

    if settings.BSV_NETWORK != "local":
        raise SystemExit(f"The settlement benchmark needs BSV_NETWORK=local, not {settings.BSV_NETWORK}.")
    count = options.households
    warmup = runs.CHUNK  # each worker settles one chunk before the clock starts
    profiled = PROFILE_SAMPLE if options.profile else 0
    period_end = floor_hour(timezone.now())
    say(
        f"setup: {count:,} households for one worker and {count:,} for two, {STEP_SAMPLE:,} for the step "
        f"breakdown" + (f", {profiled:,} to profile" if profiled else "")
    )
    setup = _Setup(2 * count + STEP_SAMPLE + 3 * warmup + profiled, period_end - HOUR)
    setup.build()
    taken = 0

    def take(n: int) -> list[int]:
        nonlocal taken
        taken += n
        return setup.household_ids[taken - n : taken]

    step_ids, profile_ids = take(STEP_SAMPLE), take(profiled)
    warmup_ids = [take(warmup), take(warmup)]
    here_warmup_ids = take(warmup)
    one_ids, two_ids = take(count), take(count)

    # In this process; the figures are measured in worker processes, which warm themselves up.
    say(f"step breakdown: settling {len(step_ids):,} households with every step timed and its SQL counted")
    steps = _step_breakdown(here_warmup_ids, step_ids, period_end)
    if profiled:
        _profile(profile_ids, period_end)

    owing = _timed_owing(period_end, one_ids + two_ids)
    jobs = setup.signing_jobs(one_ids + two_ids)
    say(f"key derivation: {len(jobs):,} household keys (BIP32, payments.keys.household_key) ...")
    began = time.perf_counter()
    keys_by_job = [_derive(job["index"]) for job in jobs]
    derivation_seconds = time.perf_counter() - began
    say(f"  {derivation_seconds:.2f} s: {len(jobs) / derivation_seconds:,.0f} keys/s")

    half = len(jobs) // 2
    say(f"ceiling: bsv-sdk build+fee+sign+serialize of {half:,} transactions ...")
    first = _sign_bare(jobs[:half], keys_by_job[:half], setup.utility_address)
    floor = _database_floor()
    _fresh_quote()
    say(f"figures: {ROUNDS} rounds each of one worker and two, {count // ROUNDS:,} households a round ...")
    rounds = _measure(warmup_ids, one_ids, two_ids, period_end)
    one, two = rounds["one"], rounds["two"]
    say(f"ceiling: bsv-sdk build+fee+sign+serialize of {len(jobs) - half:,} transactions ...")
    second = _sign_bare(jobs[half:], keys_by_job[half:], setup.utility_address)
    ceiling_seconds = first["seconds"] + second["seconds"]
    ceiling = len(jobs) / ceiling_seconds
    say(
        f"  {ceiling_seconds:.2f} s in all: {ceiling:,.0f} transactions/s "
        f"({half / first['seconds']:,.0f} before, {(len(jobs) - half) / second['seconds']:,.0f} after)"
    )
    memory = _worker_memory(rounds["memory"], count // ROUNDS)
    say(f"  memory of the first worker: {memory['text']}")

    say("checks ...")
    tally = Counter(one["tally"]) + Counter(two["tally"])
    checks = _check(one_ids + two_ids, period_end, tally, first["txids"] + second["txids"], setup)
    if rounds["warmup_problems"]:
        checks["problems"].extend(rounds["warmup_problems"])
    problems = [f"WARNING settlement: {problem}" for problem in checks["problems"]]
    for problem in problems:
        say(problem)
    if not problems:
        say("  all settled once, all seen, the utility received the exact sum, a second run settled nothing")

    rows = [
        Row(
            f"settlement: households/s, 1 worker ({count:,})",
            one["per_second"],
            "households/s",
            "bsv-sdk build+sign, 1 core",
            ceiling,
            "tx/s",
            goal=0,
            min_figure=GOAL_PER_SECOND,
        ),
        Row(
            f"settlement: households/s, 2 workers on 2 cores ({count:,})",
            two["per_second"],
            "households/s",
            "1 worker, same run",
            one["per_second"],
            "households/s",
            goal=GOAL_TWO_WORKERS,
            times=True,
        ),
        Row(
            f"memory: settlement worker, peak RSS settling {count:,}",
            memory["peak_rss"],
            "MB",
            "the same worker idle",
            memory["idle_rss"],
            "MB",
            goal=0,
            max_ratio=MEMORY_GOAL,
        ),
    ]
    per = steps["per_household"]
    split = steps["where"]
    notes = [
        f"Settlement, where a household's time goes (in process, {steps['households']:,} households, chunks of "
        f"{runs.CHUNK}, every step timed, which costs a little): {per['ms']:.3f} ms = "
        + ", ".join(f"{part['ms']:.3f} {name}" for name, part in split.items())
        + f"; {per['statements']:.3f} SQL statements a household (BEGIN, COMMIT and COPY included). "
        "Breakdown by step: var/bench/settlement.json.",
        f"Settlement, measured runs, per household: one worker {one['describe']}; two workers, each "
        f"{two['describe']}. Two workers reach {two['per_second'] / ceiling:.0%} of one core's bsv-sdk "
        f"ceiling, one worker {one['per_second'] / ceiling:.0%}; rounds (households/s): one worker "
        + ", ".join(f"{r:,.0f}" for r in one["rounds"])
        + "; two workers "
        + ", ".join(f"{r:,.0f}" for r in two["rounds"])
        + f". PostgreSQL round trip {floor['select_1_ms']:.3f} ms, a one-row write transaction "
        f"(BEGIN, UPDATE, COMMIT) {floor['write_transaction_ms']:.3f} ms; BIP32 key derivation alone "
        f"{len(jobs) / derivation_seconds:,.0f} keys/s.",
        _on_paper(one),
        f"Settlement worker memory (a fresh process: Django set up, payments.tasks imported, connected; "
        f"then {warmup} households to warm up, then the rounds): {memory['text']}.",
        *problems,
    ]
    data = {
        "notes": notes,
        "config": {
            "households_per_figure": count,
            "rounds": ROUNDS,
            "chunk": runs.CHUNK,
            "step_sample": len(step_ids),
            "profile_sample": len(profile_ids),
            "funds_sats": FUNDS,
            "usage_line": {"kwh": str(KWH), "rate": str(RATE), "cost_eur": str(COST)},
            "bsv_eur": str(BSV_EUR),
            "fee_sats_per_kb": settings.FEE_SATS_PER_KB,
            "coins_confirmed": True,
        },
        "setup_seconds": setup.timings,
        "faucet_sample": setup.faucet_sample,
        "households_owing_seconds": owing,
        "key_derivation": {
            "keys": len(jobs),
            "seconds": derivation_seconds,
            "per_second": len(jobs) / derivation_seconds,
        },
        "figures": {
            "one_worker": one,
            "two_workers": two,
            "process": "tests/bench/settle_worker.py processes, warmed up with one chunk each",
        },
        "worker_memory": memory,
        "database_floor": floor,
        "ceiling": {
            "seconds": ceiling_seconds,
            "transactions_per_second": ceiling,
            "rounds_per_second": [half / first["seconds"], (len(jobs) - half) / second["seconds"]],
            "per_cpu_second": len(jobs) / (first["cpu_seconds"] + second["cpu_seconds"]),
            "includes": "parse parent hex, build 1 input + 2 outputs, fee(SatoshisPerKilobyte), sign, txid, hex",
        },
        "checks": checks,
        "steps": steps,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


# --- Data -----------------------------------------------------------------------------------------


class _Setup:
    """Households, wallets, one confirmed coin each and one open priced hour each, with timings."""

    def __init__(self, count: int, hour_start) -> None:
        self.count = count
        self.hour_start = hour_start
        self.timings: dict[str, float] = {}
        self.faucet_sample: dict = {}
        self.household_ids: list[int] = []

    def build(self) -> None:
        from payments import keys

        began = time.perf_counter()
        with self._step("households: users, households, meters (bulk)"):
            self._households()
        with self._step("wallets: open_missing_wallets (derives each address)"):
            from payments.wallets import open_missing_wallets

            opened = open_missing_wallets()
        with self._step(f"faucet: LocalLedger.fund + sync_coins for {min(FUND_SAMPLE, self.count)} wallets"):
            self._fund_through_ledger()
        with self._step("faucet: the other coins built in Python and bulk-inserted"):
            self._fund_in_bulk()
        with self._step("ledger: mine a block (coins confirmed)"):
            self._confirm()
        with self._step("usage: one priced energy line per household (bulk)"):
            self._usage()
        with self._step("ANALYZE: table statistics, as autovacuum keeps them in production"):
            self._analyze()
        self.utility_address = keys.utility_address()
        say(f"  {opened:,} wallets opened; setup took {time.perf_counter() - began:.1f} s")
        sample = self.faucet_sample
        if sample["wallets"]:
            say(
                f"  LocalLedger.fund + sync_coins: {sample['ms_per_wallet']:.2f} ms a wallet, "
                f"{sample['ms_per_wallet'] * self.count / 1000:.1f} s for all {self.count:,}; "
                f"in bulk {sample['bulk_ms_per_wallet']:.3f} ms a wallet"
            )

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

        tariff = Tariff.objects.create(name="Settlement bench flat 0.25")
        self.version = TariffVersion.objects.create(
            tariff=tariff, valid_from=self.hour_start - timedelta(days=1), kind="flat", flat_rate=RATE
        )
        run_tag = secrets.token_hex(3)  # a second run in a kept database must not collide
        users = User.objects.bulk_create(
            [
                User(email=f"settle-{run_tag}-{n}@bench.example", password=UNUSABLE_PASSWORD_PREFIX)
                for n in range(self.count)
            ],
            batch_size=BATCH,
        )
        households = Household.objects.bulk_create(
            [Household(user=user, name=f"Settlement bench {n}", tariff=tariff) for n, user in enumerate(users)],
            batch_size=BATCH,
        )
        self.meters = Meter.objects.bulk_create(
            [Meter(serial=f"SB-{run_tag}-{n:07d}", household=h) for n, h in enumerate(households)],
            batch_size=BATCH,
        )
        self.household_ids = [household.pk for household in households]

    def _wallets(self) -> list:
        from payments.models import Wallet

        return list(Wallet.objects.filter(household_id__in=self.household_ids).order_by("household_id"))

    def _fund_through_ledger(self) -> None:
        from payments.networks.local import LocalLedger

        ledger = LocalLedger()
        sample = self._wallets()[:FUND_SAMPLE]
        began = time.perf_counter()
        with _log_to_file():
            for wallet in sample:
                ledger.fund(wallet.address, FUNDS)
                wallet.sync_coins(ledger)
        seconds = time.perf_counter() - began
        self.faucet_sample = {"wallets": len(sample), "seconds": seconds, "ms_per_wallet": 1000 * seconds / len(sample)}

    def _fund_in_bulk(self) -> None:
        """The faucet transaction ``LocalLedger.fund`` makes, built here and inserted a few thousand at a time."""
        from django.utils import timezone

        from payments.models import LedgerOutput, LedgerTransaction, Utxo
        from payments.networks.local import NULL_INDEX, NULL_TXID

        began = time.perf_counter()
        funded = set(
            Utxo.objects.filter(wallet__household_id__in=self.household_ids).values_list("wallet_id", flat=True)
        )
        wallets = [wallet for wallet in self._wallets() if wallet.pk not in funded]
        now = timezone.now()
        built = []
        for wallet in wallets:
            nonce = secrets.token_bytes(16)
            lock = P2PKH().lock(wallet.address)
            tx = Transaction(
                [
                    TransactionInput(
                        source_txid=NULL_TXID,
                        source_output_index=NULL_INDEX,
                        unlocking_script=Script(bytes([len(nonce)]) + nonce),
                    )
                ],
                [TransactionOutput(lock, FUNDS)],
            )
            built.append((wallet, tx.txid(), tx.hex(), lock.hex()))
        rows = LedgerTransaction.objects.bulk_create(
            [
                LedgerTransaction(txid=txid, raw=raw, fee=0, is_faucet=True, accepted_at=now)
                for _, txid, raw, _ in built
            ],
            batch_size=BATCH,
        )
        LedgerOutput.objects.bulk_create(
            [
                LedgerOutput(transaction=row, vout=0, satoshis=FUNDS, locking_script=lock, address=wallet.address)
                for row, (wallet, _, _, lock) in zip(rows, built, strict=True)
            ],
            batch_size=BATCH,
        )
        Utxo.objects.bulk_create(
            [Utxo(wallet=wallet, txid=txid, vout=0, satoshis=FUNDS, raw_parent=raw) for wallet, txid, raw, _ in built],
            batch_size=BATCH,
        )
        if wallets and self.faucet_sample.get("wallets"):
            self.faucet_sample["bulk_ms_per_wallet"] = 1000 * (time.perf_counter() - began) / len(wallets)

    def _confirm(self) -> None:
        from payments.models import Utxo
        from payments.networks.local import LocalLedger

        with _log_to_file():
            LocalLedger().mine()
        # What sync_coins would record at its next call: the block confirmed them.
        Utxo.objects.filter(wallet__household_id__in=self.household_ids).update(confirmed=True)

    def _analyze(self) -> None:
        """Plans for a chunk's queries depend on what PostgreSQL knows of the tables: tens of thousands
        of rows written a moment ago would otherwise look like none to it."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    def _usage(self) -> None:
        from meters.models import HourlyUsage

        HourlyUsage.objects.bulk_create(
            [
                HourlyUsage(
                    household_id=meter.household_id,
                    meter=meter,
                    kind=HourlyUsage.Kind.ENERGY,
                    hour_start=self.hour_start,
                    kwh=KWH,
                    tariff_version=self.version,
                    rate=RATE,
                    cost_eur=COST,
                )
                for meter in self.meters
            ],
            batch_size=BATCH,
        )

    def signing_jobs(self, household_ids: list[int]) -> list[dict]:
        """What each household's payment is made of, read back from the database the settlement reads."""
        from lib.money import eur_to_satoshis
        from payments.models import Utxo

        satoshis = eur_to_satoshis(COST, BSV_EUR)
        coins = Utxo.objects.filter(wallet__household_id__in=household_ids, state=Utxo.State.AVAILABLE).values_list(
            "wallet__household_id", "wallet__derivation_index", "wallet__address", "vout", "raw_parent"
        )
        by_household = {row[0]: row for row in coins}
        return [
            {
                "household_id": household_id,
                "index": by_household[household_id][1],
                "address": by_household[household_id][2],
                "vout": by_household[household_id][3],
                "raw_parent": by_household[household_id][4],
                "satoshis": satoshis,
            }
            for household_id in household_ids
        ]


class _Clock:
    """Wall time, this process's CPU time and its PostgreSQL backend's CPU time (when readable in /proc)."""

    def __enter__(self) -> _Clock:
        self._backend = _backend_cpu_reader()
        self._began = (time.perf_counter(), time.process_time(), self._backend())
        return self

    def __exit__(self, *exc_info) -> None:
        wall, cpu, backend = self._began
        self.wall = time.perf_counter() - wall
        self.cpu = time.process_time() - cpu
        after = self._backend()
        self.backend_cpu = after - backend if after is not None and backend is not None else None

    def per_household(self, count: int) -> dict:
        if not count:  # a second worker that found no chunk left (a round of one chunk): nothing to divide
            return {"wall": None, "python_cpu": None, "postgres_cpu": None}
        backend = None if self.backend_cpu is None else 1000 * self.backend_cpu / count
        return {"wall": 1000 * self.wall / count, "python_cpu": 1000 * self.cpu / count, "postgres_cpu": backend}

    def describe(self, count: int) -> str:
        per = self.per_household(count)
        backend = "?" if per["postgres_cpu"] is None else f"{per['postgres_cpu']:.2f}"
        return (
            f"{per['wall']:.2f} ms wall = {per['python_cpu']:.2f} ms CPU in this process + {backend} ms CPU "
            f"in its PostgreSQL backend + the rest waiting (fsync at COMMIT, scheduling)"
        )


def _backend_cpu_reader() -> Callable[[], float | None]:
    """A function returning the CPU seconds of this connection's PostgreSQL backend so far (None if unknown)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        stat = Path(f"/proc/{cursor.fetchone()[0]}/stat")
    ticks = os.sysconf("SC_CLK_TCK")

    def read() -> float | None:
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return None  # PostgreSQL on another machine, or in a container we cannot see into
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime

    return read


def _database_floor(selects: int = 2_000, writes: int = 300) -> dict:
    """What one round trip and one committed one-row write cost right now, beside the figure."""
    from django.db import connection, transaction

    from payments.models import PriceQuote

    quote_id = PriceQuote.objects.values_list("pk", flat=True).first()
    with connection.cursor() as cursor:
        began = time.perf_counter()
        for _ in range(selects):
            cursor.execute("SELECT 1")
        select = (time.perf_counter() - began) / selects
        began = time.perf_counter()
        for _ in range(writes):
            with transaction.atomic():
                cursor.execute("UPDATE payments_pricequote SET source = source WHERE id = %s", [quote_id])
        write = (time.perf_counter() - began) / writes
    say(f"database floor: SELECT 1 {select * 1000:.3f} ms, one-row write transaction {write * 1000:.3f} ms")
    return {"select_1_ms": select * 1000, "write_transaction_ms": write * 1000}


def _derive(index: int) -> PrivateKey:
    from payments import keys

    return keys.household_key(index)


def _fresh_quote() -> None:
    """A quote stamped now: the run must never be deferred for an old price."""
    from django.utils import timezone

    from payments.models import PriceQuote

    PriceQuote.objects.create(source="fixed", bsv_eur=BSV_EUR, fetched_at=timezone.now())


def _settle(household_ids: list[int], period_end) -> Counter:
    from payments import runs

    return runs.settle_households(household_ids, period_end)


def _on_paper(one: dict) -> str:
    """N workers, from the one-worker rounds' CPU per household: what more workers and cores would do."""
    per = one["per_household_ms"]
    worker, database = per["python_cpu"], per["postgres_cpu"]
    if database is None:
        return "Settlement on paper: PostgreSQL's CPU was not readable, so N workers are not projected."
    both = worker + database
    return (
        f"Settlement on paper, N workers: a household costs a worker {worker:.3f} ms of CPU (the local "
        f"ledger's checks included, which on testnet or mainnet the network does) and PostgreSQL "
        f"{database:.3f} ms (one-worker rounds above). A worker takes turns with its PostgreSQL backend, "
        f"so it keeps about one core busy; chunks share nothing but the tables (each locks only its own "
        f"wallets and meters), so N workers add up until the cores run out: on C cores that also run "
        f"PostgreSQL, about C / {both:.3f} ms = {1000 / both:,.0f} x C households/s ({2000 / both:,.0f} on "
        f"this machine's 2); with PostgreSQL on a host of its own, {1000 / worker:,.0f} households/s per "
        f"worker core and {1000 / database:,.0f} per database core, so 10 million households in an hour "
        f"(2,778/s) take {2778 * worker / 1000:.1f} worker cores and {2778 * database / 1000:.1f} database "
        f"cores (fsync, WAL and vacuum not counted)."
    )


class _Worker:
    """A ``tests.bench.settle_worker`` process and the pipes to it."""

    def __init__(self, name: str) -> None:
        from tests.bench.settle_worker import MARKER

        self.name, self.marker = name, MARKER
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        self.log = open(OUTPUT_DIR / f"settle_worker_{name}.log", "wb")  # noqa: SIM115 (closed in close())
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.settle_worker"],
            cwd=ROOT,
            env=os.environ,  # harness.setup_django put the bench environment there
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            bufsize=1,
        )
        self.pid = self.process.pid
        self.started = self.answer()

    def send(self, message: dict | str) -> None:
        self.process.stdin.write((message if isinstance(message, str) else json.dumps(message)) + "\n")
        self.process.stdin.flush()

    def answer(self, expect: str = "") -> dict:
        """The next ``RESULT`` line (or, with ``expect``, that line), within WORKER_TIMEOUT."""
        import select

        deadline = time.monotonic() + WORKER_TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 1)
            if not ready:
                if self.process.poll() is not None:
                    break
                continue
            line = self.process.stdout.readline()
            if not line:
                break
            if expect and line.strip() == expect:
                return {}
            if line.startswith(self.marker):
                return json.loads(line.removeprefix(self.marker))
        self.process.kill()
        log = (OUTPUT_DIR / f"settle_worker_{self.name}.log").read_text()[-3000:]
        raise RuntimeError(f"settlement worker {self.name} exited with {self.process.poll()} or timed out:\n{log}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.send({"job": "quit"})
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def _measure(warmup_ids: list[list[int]], one_ids: list[int], two_ids: list[int], period_end) -> dict:
    """The figures: ROUNDS rounds of one worker and of two, alternating; the first worker's memory."""
    from payments import runs

    workers = [_Worker("a"), _Worker("b")]
    result: dict = {"warmup_problems": []}
    try:
        for worker, ids in zip(workers, warmup_ids, strict=True):
            worker.send({"job": "warmup", "chunks": list(runs.chunks(ids)), "period_end": period_end.isoformat()})
            warmed = worker.answer()
            if not _all_seen(Counter(warmed["tally"]), len(ids)):
                result["warmup_problems"].append(f"worker {worker.name}'s warm-up ended {warmed['tally']}")
        memory = {"idle": workers[0].started["memory"]["idle"], "after_warmup": warmed["memory"]}
        figures = {"one": [], "two": []}
        share = len(one_ids) // ROUNDS
        with procmem.Sampler(workers[0].pid) as sampler:
            for n in range(ROUNDS):
                part = slice(n * share, (n + 1) * share if n < ROUNDS - 1 else None)
                for name, ids, crew in (("one", one_ids[part], workers[:1]), ("two", two_ids[part], workers)):
                    figures[name].append(_round(crew, ids, period_end))
                    rate = figures[name][-1]["per_second"]
                    say(f"  round {n + 1}, {len(crew)} worker{'s' if len(crew) > 1 else ''}: {rate:,.0f} households/s")
        first = figures["one"][0]["workers"][0]
        began, ended = first["monotonic"]
        memory.update(
            after_run=figures["two"][-1]["workers"][0]["memory"],
            rss_samples=sampler.between(began, ended),
            rss_at={f"{at:.0%}": sampler.at_share(began, ended, at) for at in (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)},
        )
    finally:
        for worker in workers:
            worker.close()
    result["memory"] = memory
    for name, rounds in figures.items():
        households = sum(r["households"] for r in rounds)
        seconds = sum(r["seconds"] for r in rounds)
        per_worker = [w for r in rounds for w in r["workers"]]
        wall = sum(w["seconds"] for w in per_worker)
        cpu = sum(w["cpu_seconds"] for w in per_worker)
        backend = [w["backend_cpu_seconds"] for w in per_worker]
        backend_ms = None if None in backend else 1000 * sum(backend) / households
        result[name] = {
            "per_second": households / seconds,
            "seconds": seconds,
            "households": households,
            "rounds": [r["per_second"] for r in rounds],
            "tally": dict(sum((Counter(w["tally"]) for w in per_worker), Counter())),
            "per_household_ms": {
                "wall_per_worker": 1000 * wall / households,
                "python_cpu": 1000 * cpu / households,
                "postgres_cpu": backend_ms,
            },
            "describe": (
                f"{1000 * wall / households:.3f} ms wall = {1000 * cpu / households:.3f} ms CPU in the worker + "
                + ("?" if backend_ms is None else f"{backend_ms:.3f}")
                + " ms CPU in its PostgreSQL backend + the rest waiting (fsync at COMMIT, the other processes)"
            ),
            "workers": per_worker,
        }
    return result


def _round(crew: list[_Worker], ids: list[int], period_end) -> dict:
    """Settle ``ids`` with the workers of ``crew``, started together; each takes the next chunk when it is free."""
    import select

    from payments import runs
    from tests.bench.settle_worker import DONE, NEXT

    chunks = list(runs.chunks(ids))
    for worker in crew:
        worker.send({"job": "settle", "period_end": period_end.isoformat()})
    for worker in crew:
        worker.answer(expect="ARMED")
    for worker in crew:
        worker.send("go")
    answers, waiting = {}, {worker.process.stdout: worker for worker in crew}
    while waiting:
        ready, _, _ = select.select(list(waiting), [], [], WORKER_TIMEOUT)
        if not ready:
            raise RuntimeError(f"settlement workers {[w.name for w in waiting.values()]} stopped answering")
        for stream in ready:
            worker = waiting[stream]
            line = stream.readline()
            if line.strip() == NEXT:
                worker.send(json.dumps(chunks.pop(0)) if chunks else DONE)
            elif line.startswith(worker.marker):
                answers[worker.name] = json.loads(line.removeprefix(worker.marker))
                del waiting[stream]
            elif not line:
                raise RuntimeError(f"settlement worker {worker.name} exited during a round")
    results = [answers[worker.name] for worker in crew]
    began = min(answer["monotonic"][0] for answer in results)
    ended = max(answer["monotonic"][1] for answer in results)
    return {
        "households": len(ids),
        "seconds": ended - began,
        "per_second": len(ids) / (ended - began),
        "workers": results,
    }


def _worker_memory(memory: dict, round_households: int) -> dict:
    """The first worker's memory: idle, after the warm-up, along its first round, peak, after; text for the notes."""
    idle, after = memory["idle"], memory["after_run"]
    if idle is None or after is None:
        raise RuntimeError("/proc/<pid>/status is not readable: the memory figures need Linux")
    at = memory["rss_at"]
    early, late = at["10%"], at["100%"]
    growth = (late - early) / (0.9 * round_households / 1000) if early is not None and late is not None else None
    text = (
        f"idle {procmem.describe(idle)}; after the warm-up {memory['after_warmup']['rss']:.0f} MB; "
        f"during its first round alone "
        + ", ".join(f"{rss:.0f}" for rss in at.values() if rss is not None)
        + f" MB at 0/10/25/50/75/100% of it; peak {after['peak_rss']:.0f} MB; after the last round "
        f"{procmem.describe(after)}"
        + (
            f"; {growth:+.2f} MB per 1,000 households from 10% of the first round to its end"
            if growth is not None
            else ""
        )
    )
    return {
        "text": text,
        "idle_rss": idle["rss"],
        "peak_rss": after["peak_rss"],
        "mb_per_1000_households": growth,
        "rss_at_share_of_first_round": at,
        "snapshots": {key: value for key, value in memory.items() if key not in ("rss_samples", "rss_at")},
        "samples": len(memory["rss_samples"]),
    }


def _timed_owing(period_end, ids: list[int]) -> float:
    """How long the run's first step, finding who owes, takes; it must find every household."""
    from payments import runs

    began = time.perf_counter()
    owing = runs.households_owing(period_end)
    seconds = time.perf_counter() - began
    say(f"households_owing: {len(owing):,} households in {seconds * 1000:.0f} ms")
    missing = set(ids) - set(owing)
    if missing:
        raise RuntimeError(f"households_owing misses {len(missing)} of the bench households")
    return seconds


@contextlib.contextmanager
def _log_to_file() -> Iterator[None]:
    """Keep logging on (its cost is part of the real one), but into a file rather than over the table."""
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


# --- The ceiling ----------------------------------------------------------------------------------


def _sign_bare(jobs: list[dict], keys: list[PrivateKey], utility_address: str) -> dict:
    """bsv-sdk alone: the settlement's transactions, built and signed through its Transaction objects (the bytes
    ``settlement.sign_from_coins`` signs on bsv-sdk's native layer, payments/p2pkh.py; the txids are checked equal)."""
    from django.conf import settings

    rate = settings.FEE_SATS_PER_KB
    txids = []
    began, cpu = time.perf_counter(), time.process_time()
    for job, key in zip(jobs, keys, strict=True):
        parent = Transaction.from_hex(job["raw_parent"])
        tx = Transaction()
        tx.add_input(
            TransactionInput(
                source_transaction=parent,
                source_output_index=job["vout"],
                unlocking_script_template=P2PKH().unlock(key),
            )
        )
        tx.add_output(TransactionOutput(locking_script=P2PKH().lock(utility_address), satoshis=job["satoshis"]))
        tx.add_output(TransactionOutput(locking_script=P2PKH().lock(job["address"]), change=True))
        tx.fee(SatoshisPerKilobyte(rate))
        tx.sign()
        txids.append(tx.txid())
        tx.hex()
    return {"seconds": time.perf_counter() - began, "cpu_seconds": time.process_time() - cpu, "txids": txids}


# --- Checks ---------------------------------------------------------------------------------------


def _check(ids: list[int], period_end, tally: Counter, bare_txids: list[str], setup: _Setup) -> dict:
    from django.db.models import Count, Sum

    from lib.money import eur_to_satoshis
    from meters.models import HourlyUsage
    from payments.models import LedgerOutput, Settlement, Utxo

    count = len(ids)
    problems = []
    if not _all_seen(tally, count):
        problems.append(f"the run ended {dict(tally)}, expected {count} seen")
    settlements = Settlement.objects.filter(household_id__in=ids)
    states = dict(settlements.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
    if states != {Settlement.State.SEEN.value: count}:
        problems.append(f"settlement states {states}, expected {count} seen")
    twice = settlements.values("household_id").annotate(n=Count("pk")).filter(n__gt=1).count()
    if twice:
        problems.append(f"{twice} households have more than one settlement")
    per_household = eur_to_satoshis(COST, BSV_EUR)
    paid = settlements.aggregate(sats=Sum("satoshis"), eur=Sum("eur"))
    received = (
        LedgerOutput.objects.filter(
            address=setup.utility_address, transaction__txid__in=settlements.values("txid")
        ).aggregate(sats=Sum("satoshis"))["sats"]
        or 0
    )
    if not paid["sats"] == received == per_household * count:
        problems.append(
            f"utility received {received} sat, settlements say {paid['sats']}, expected {per_household * count}"
        )
    if paid["eur"] != COST * count:
        problems.append(f"settlements cover {paid['eur']} EUR, usage cost {COST * count} EUR")
    still_open = HourlyUsage.objects.filter(household_id__in=ids, settled_at__isnull=True).count()
    if still_open:
        problems.append(f"{still_open} usage lines still open")
    coins = dict(
        Utxo.objects.filter(wallet__household_id__in=ids)
        .values_list("state")
        .annotate(n=Count("pk"))
        .values_list("state", "n")
    )
    if coins != {Utxo.State.SPENT.value: count, Utxo.State.AVAILABLE.value: count}:
        problems.append(f"coins by state {coins}, expected {count} spent and {count} change available")
    settled_txids = dict(settlements.values_list("household_id", "txid"))
    mismatched = sum(settled_txids.get(h) != txid for h, txid in zip(ids, bare_txids, strict=True))
    if mismatched:
        problems.append(f"{mismatched} settlements signed another transaction than bare bsv-sdk did")

    _fresh_quote()
    with _log_to_file():
        again = _settle(ids, period_end)
    if dict(again) != {"nothing": count}:
        problems.append(f"a second run ended {dict(again)}, expected {count} nothing")
    if Settlement.objects.filter(household_id__in=ids).count() != count:
        problems.append("a second run created settlements")
    return {
        "problems": problems,
        "settlement_states": states,
        "satoshis_per_household": per_household,
        "utility_received_sats": received,
        "settled_eur": str(paid["eur"]),
        "coins_by_state": coins,
        "second_run": dict(again),
        "txids_equal_to_bare_bsv_sdk": count - mismatched,
    }


def _all_seen(tally: Counter, count: int) -> bool:
    """Every household signed and seen by the ledger (older runs.py also counted each as "signed")."""
    return tally.get("seen") == count and set(tally) <= {"seen", "signed"} and tally.get("signed", count) == count


# --- Where the time goes --------------------------------------------------------------------------


class _Steps:
    """Wall time, PostgreSQL time and SQL statements per step, for steps nested in a call tree.

    Each wrapped function is a step; a statement counts for the innermost step running it.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.seconds: dict[tuple[str, ...], float] = defaultdict(float)
        self.cpu_seconds: dict[tuple[str, ...], float] = defaultdict(float)
        self.db_seconds: dict[tuple[str, ...], float] = defaultdict(float)
        self.statements: Counter = Counter()
        self.calls: Counter = Counter()
        self.sql: dict[tuple[str, ...], list[str]] = defaultdict(list)
        self._restore: list[Callable[[], None]] = []

    def wrap(self, owner: object, name: str, label: str) -> None:
        own = name in vars(owner)  # else inherited: restoring means deleting the wrapper again
        raw = vars(owner).get(name)  # the classmethod object itself, for a classmethod
        original = getattr(owner, name)  # bound for a classmethod, a plain function for a method
        steps = self

        def timed(*args, **kwargs):
            steps.stack.append(label)
            path = tuple(steps.stack)
            began, cpu = time.perf_counter(), time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                steps.seconds[path] += time.perf_counter() - began
                steps.cpu_seconds[path] += time.process_time() - cpu
                steps.calls[path] += 1
                steps.stack.pop()

        setattr(owner, name, timed)
        self._restore.append(lambda: setattr(owner, name, raw) if own else delattr(owner, name))

    def restore(self) -> None:
        while self._restore:
            self._restore.pop()()

    def execute(self, execute, sql, params, many, context):
        path = tuple(self.stack)
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.db_seconds[path] += time.perf_counter() - began
            self.statements[path] += 1
            if len(self.sql[path]) < 12:
                self.sql[path].append(sql[:200])


def _instrument(steps: _Steps) -> None:
    from django.db import connections

    from payments import bulk, keys, p2pkh, runs, settlement
    from payments.models import Settlement
    from payments.networks import local
    from payments.networks.local import LocalLedger

    for owner, name, label in (
        (runs, "settle_many", "sign a chunk"),
        (settlement, "usable_quote", "price quote"),
        (settlement, "_spendable_coins", "load coins"),
        (settlement, "sign_from_coins", "choose coins + sign"),
        (keys, "household_key", "BIP32 key derivation"),
        (p2pkh, "parent_output", "parse parent"),
        (p2pkh, "pay", "sign (bsv-sdk native)"),
        (settlement, "_record", "record + claim lines and coins"),
        (bulk, "insert", "COPY rows"),
        (runs, "send_many", "send and record"),
        (LocalLedger, "broadcast_many", "ledger.broadcast_many"),
        (local, "_parse_plain", "parse"),
        (local, "_check_outputs", "structure"),
        (local, "_p2pkh_scripts_valid", "verify scripts (interpreter)"),
        (LocalLedger, "_accept_many", "record txs + outputs"),
        (Settlement, "accept_locked", "mark seen"),
        (runs, "_settled", "alarm hook (enqueue)"),
    ):
        steps.wrap(owner, name, label)
    # COMMIT is a round trip Django sends outside execute(): time it as a step of its own.
    steps.wrap(connections["default"], "_commit", "COMMIT")


# Where a household's time goes: CPU of this process in signing (bsv-sdk) and in the local ledger's
# checks (each step's own CPU), the rest of this process's CPU (Python: Django, psycopg, the run's
# bookkeeping), CPU of its PostgreSQL backend, and what is left of the wall time: waiting (fsync at
# COMMIT, round trips, other processes on the machine).
_SIGNING = {"BIP32 key derivation", "parse parent", "sign (bsv-sdk native)", "choose coins + sign"}
_LEDGER = {"parse", "structure", "verify scripts (interpreter)"}


def _where(table: list[dict], paths: list[tuple[str, ...]], clock: _Clock, count: int) -> dict:
    per = clock.per_household(count)
    signing = ledger = 0.0
    for row, path in zip(table, paths, strict=True):
        step = path[-1]
        if step in _SIGNING:
            signing += row["own_cpu_ms_per_household"]
        elif step in _LEDGER:
            ledger += row["own_cpu_ms_per_household"]
    parts = {
        "signing (bsv-sdk)": signing,
        "ledger checks (bsv-sdk, the local network's)": ledger,
        "Python (Django, psycopg, the rest)": per["python_cpu"] - signing - ledger,
        "PostgreSQL (its backend's CPU)": per["postgres_cpu"] or 0.0,
    }
    parts["waiting (fsync, round trips, other processes)"] = per["wall"] - sum(parts.values())
    return {name: {"ms": ms, "share": ms / per["wall"]} for name, ms in parts.items()}


def _step_breakdown(warmup_ids: list[int], household_ids: list[int], period_end) -> dict:
    """Settle ``household_ids`` in this process with every step timed, after a chunk untimed (first-use costs:
    the broker's connection for the alarm hook, prepared caches), as the workers do."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from payments import runs

    _fresh_quote()
    with _log_to_file():
        warmed = _settle(warmup_ids, period_end)
    if not _all_seen(warmed, len(warmup_ids)):
        raise RuntimeError(f"the step breakdown's warm-up ended {dict(warmed)}")
    steps = _Steps()
    _instrument(steps)
    try:
        with (
            _Clock() as clock,  # first: its own query is not the run's
            _log_to_file(),
            connection.execute_wrapper(steps.execute),
            CaptureQueriesContext(connection) as captured,
        ):
            steps.stack.append("run")
            try:
                tally = _settle(household_ids, period_end)
            finally:
                steps.stack.pop()
    finally:
        steps.restore()
    seconds, cpu_seconds = clock.wall, clock.cpu
    count = len(household_ids)
    if not _all_seen(tally, count):
        raise RuntimeError(f"the step sample ended {dict(tally)}")
    steps.seconds[("run",)] = seconds
    steps.cpu_seconds[("run",)] = cpu_seconds
    table, paths = _step_table(steps, count)
    copies = sum(n for path, n in steps.calls.items() if path[-1] == "COPY rows")
    statements = len(captured.captured_queries) + copies
    where = _where(table, paths, clock, count)
    verbs = Counter(query["sql"].split(None, 1)[0].upper() for query in captured.captured_queries)
    verbs["COPY"] += copies
    per_household = {
        "ms": 1000 * seconds / count,
        "cpu_ms": 1000 * cpu_seconds / count,
        "db_ms": 1000 * sum(steps.db_seconds.values()) / count,
        "statements": statements / count,
        "statements_by_verb": {verb: n / count for verb, n in verbs.most_common()},
    }
    say(
        f"  {per_household['ms']:.2f} ms ({per_household['cpu_ms']:.2f} ms CPU in this process) and "
        f"{per_household['statements']:.3f} SQL statements a household "
        f"({', '.join(f'{n:.3f} {verb}' for verb, n in per_household['statements_by_verb'].items())})"
    )
    _print_step_table(table)
    say(
        f"  where a household's {per_household['ms']:.3f} ms go (steps timed, which costs a little): "
        + ", ".join(f"{part['ms']:.3f} ms {name} ({part['share']:.0%})" for name, part in where.items())
    )
    chunks = -(-count // runs.CHUNK)
    first_chunk = [
        query["sql"][:300] for query in captured.captured_queries[: len(captured.captured_queries) // chunks]
    ]
    return {
        "households": count,
        "per_household": per_household,
        "where": where,
        "table": table,
        "sql_of_one_chunk": first_chunk,
        "sql_by_step": {" / ".join(path[1:]) or "run": sql for path, sql in steps.sql.items()},
    }


def _step_table(steps: _Steps, count: int) -> tuple[list[dict], list[tuple[str, ...]]]:
    """One row per step in call order: time inside it but outside its sub-steps, and its own SQL (a COPY counts
    as a statement). Also the steps' paths, in the same order."""
    paths = sorted(set(steps.seconds) | set(steps.statements), key=_call_order)
    table = []
    for path in paths:
        children = [p for p in paths if len(p) == len(path) + 1 and p[: len(path)] == path]
        own = steps.seconds[path] - sum(steps.seconds[child] for child in children)
        own_cpu = steps.cpu_seconds[path] - sum(steps.cpu_seconds[child] for child in children)
        table.append(
            {
                "step": path[-1],
                "depth": len(path) - 1,
                "calls_per_household": steps.calls[path] / count if path != ("run",) else 1,
                "ms_per_household": 1000 * steps.seconds[path] / count,
                "own_ms_per_household": 1000 * own / count,
                "own_cpu_ms_per_household": 1000 * own_cpu / count,
                "db_ms_per_household": 1000 * steps.db_seconds[path] / count,
                "statements_per_household": (
                    steps.statements[path] + (steps.calls[path] if path[-1] == "COPY rows" else 0)
                )
                / count,
            }
        )
    return table, paths


_ORDER = [
    "run",
    "sign a chunk",
    "price quote",
    "load coins",
    "choose coins + sign",
    "BIP32 key derivation",
    "parse parent",
    "sign (bsv-sdk native)",
    "record + claim lines and coins",
    "COPY rows",
    "send and record",
    "ledger.broadcast_many",
    "parse",
    "structure",
    "verify scripts (interpreter)",
    "record txs + outputs",
    "mark seen",
    "alarm hook (enqueue)",
    "COMMIT",
]


def _call_order(path: tuple[str, ...]) -> list[int]:
    return [_ORDER.index(label) for label in path]


def _print_step_table(table: list[dict]) -> None:
    say(
        f"  {'step (own = outside its sub-steps)':44} {'total ms':>9} {'own ms':>8} {'own CPU':>8} "
        f"{'db ms':>7} {'SQL':>6}"
    )
    for row in table:
        say(
            f"  {'  ' * row['depth'] + row['step']:44} {row['ms_per_household']:9.3f} "
            f"{row['own_ms_per_household']:8.3f} {row['own_cpu_ms_per_household']:8.3f} "
            f"{row['db_ms_per_household']:7.3f} "
            f"{row['statements_per_household']:6.3f}"
        )
    say(
        "  (ms per household; own CPU = this process's CPU in the step itself; db ms = waiting in execute() "
        "for the step's own SQL statements; COMMIT and COPY are steps of their own; SQL = statements a household)"
    )


def _profile(household_ids: list[int], period_end) -> None:
    _fresh_quote()
    profiler = cProfile.Profile()
    with _log_to_file():
        began = time.perf_counter()
        profiler.enable()
        _settle(household_ids, period_end)
        profiler.disable()
        elapsed = time.perf_counter() - began
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    dump = OUTPUT_DIR / "settlement.prof"
    profiler.dump_stats(dump)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(30)
    stats.sort_stats("cumulative").print_stats(60)
    count = len(household_ids)
    print(f"\n=== profile: {count} households settled under cProfile, {elapsed / count * 1000:.2f} ms each ({dump})")
    print(out.getvalue())
