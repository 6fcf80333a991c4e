"""The household dashboard's latency on PostgreSQL, beside a bare Django view measured in the same run.

1. Setup: two households on a time-of-use tariff (the chart's slowest path: tariff, bands, price
   curve), with funded wallets and a price quote. One has ONE YEAR of history, the other ONE WEEK:
   hourly usage lines (an energy and a standing-charge line per hour) built directly in bulk, the
   way ingest leaves them (all settled but the last two hours), and the year's 15-minute readings
   (cheap to insert; the dashboard does not read them, they make the database realistic).
2. In this process, with ``django.test.Client`` logged in (the session engine, cache, middleware
   and cached templates of production; no network and no gunicorn, so the figures are the code's):
   the bare view ``/bench/bare``, the full dashboard page and its htmx chart partial (the default
   view: today by hour, in EUR) for each household. The URLs take turns request by request, in a
   new random order each turn, so background load weighs on all alike; median and p95 of each. The
   partial is cached (meters/charts.py): a repeated request is a cache hit; the cache miss is
   measured right after the household's usage version is raised, as a reading does (untimed).
3. Goals (issue 12): the chart partial within 5x the bare view (median), its cache miss within
   15x; a year of history serving at least 90% of a week's pages a second, for the page and for
   the partial. Also: each chart range's partial (day, week, month, year; cache misses) for both
   households, and the SQL statements per page. ``--profile`` adds a cProfile of the partial's
   hit and miss and of the household floor (``var/bench/dashboard-*.prof``).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import statistics
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from tests.bench.harness import OUTPUT_DIR
from tests.bench.report import Row, say

PARTIAL_GOAL = 1 / 5  # the chart partial within 5x the bare view (issue 12)
MISS_GOAL = 1 / 15  # its cache miss (right after a reading) within 15x
HISTORY_GOAL = 0.9  # a year of history serves at least 90% of a week's pages a second
BATCH = 5_000
RANGE_SAMPLES = 40  # requests per chart range for the per-range notes
ORDER_SEED = 12  # the order the URLs take their turns in: random, the same in every run
HOST = "127.0.0.1"  # the bench settings' ALLOWED_HOSTS
FLOOR_PATH = "/bench/household-floor"
BANDS = [  # Spain's 2.0TD periods on weekdays, off-peak weekends (as the demo tariff)
    {"days": [0, 1, 2, 3, 4], "start": 0, "end": 8, "rate": "0.130000"},
    {"days": [0, 1, 2, 3, 4], "start": 8, "end": 10, "rate": "0.200000"},
    {"days": [0, 1, 2, 3, 4], "start": 10, "end": 14, "rate": "0.320000"},
    {"days": [0, 1, 2, 3, 4], "start": 14, "end": 18, "rate": "0.200000"},
    {"days": [0, 1, 2, 3, 4], "start": 18, "end": 22, "rate": "0.320000"},
    {"days": [0, 1, 2, 3, 4], "start": 22, "end": 24, "rate": "0.200000"},
    {"days": [5, 6], "start": 0, "end": 24, "rate": "0.130000"},
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dashboard")
    group.add_argument(
        "--dashboard-requests",
        type=int,
        default=400,
        help="measured requests per URL for the main figures, over all rounds (default 400)",
    )


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    began = time.perf_counter()
    say("setup: a household with a year of history, one with a week (usage lines in bulk, readings) ...")
    setup = _setup()
    say(f"  {setup['seconds']:.1f} s: {setup['rows']}")
    year, week = _client(setup["year_user"]), _client(setup["week_user"])
    bare = _client(None)
    htmx = {"HTTP_HX_REQUEST": "true"}
    _add_floor_view()
    miss_year, miss_week = _stale(setup["year_household_id"]), _stale(setup["week_household_id"])
    urls: dict[str, Get] = {
        "bare": lambda: bare.get("/bench/bare"),
        "household_floor": lambda: year.get(FLOOR_PATH),
        "page_year": lambda: year.get("/"),
        "partial_year": lambda: year.get("/", **htmx),
        "partial_year_miss": (miss_year, lambda: year.get("/", **htmx)),
        "page_week": lambda: week.get("/"),
        "partial_week": lambda: week.get("/", **htmx),
    }
    _check_answers(urls)
    per_round = max(1, options.dashboard_requests // options.rounds)
    say(
        f"latency: {len(urls)} URLs, {options.rounds * per_round} requests each, taking turns in random order, "
        f"after {max(10, per_round // 4)} warm-up requests each"
    )
    timings = _measure(urls, options.rounds, per_round)
    summary = {name: _summary(samples) for name, samples in timings.items()}
    for name, figures in summary.items():
        say(f"  {name:14} median {figures['median_ms']:6.2f} ms  p95 {figures['p95_ms']:6.2f} ms")

    say(f"each chart range's partial, {RANGE_SAMPLES} cache misses each ...")
    ranges = {}
    for history, client, miss in (("year", year, miss_year), ("week", week, miss_week)):
        for range_ in ("day", "week", "month", "year"):
            get = (miss, lambda c=client, r=range_: c.get(f"/?range={r}", **htmx))
            samples = _measure({"r": get}, 1, RANGE_SAMPLES)
            ranges[f"{range_} range, {history} of history"] = _summary(samples["r"])
    queries = _queries(year, week, htmx, miss_year)
    if options.profile:
        _profile({"hit": urls["partial_year"], "miss": urls["partial_year_miss"], "floor": urls["household_floor"]})

    rows = [
        Row(
            "dashboard: chart partial, a year of history",
            1000 / summary["partial_year"]["median_ms"],
            "pages/s",
            "bare Django view",
            1000 / summary["bare"]["median_ms"],
            "requests/s",
            PARTIAL_GOAL,
        ),
        Row(
            "dashboard: chart partial, cache miss (after a reading), a year of history",
            1000 / summary["partial_year_miss"]["median_ms"],
            "pages/s",
            "bare Django view",
            1000 / summary["bare"]["median_ms"],
            "requests/s",
            MISS_GOAL,
        ),
        Row(
            "dashboard: full page, a year vs a week of history",
            1000 / summary["page_year"]["median_ms"],
            "pages/s",
            "a week of history",
            1000 / summary["page_week"]["median_ms"],
            "pages/s",
            HISTORY_GOAL,
        ),
        Row(
            "dashboard: chart partial, a year vs a week of history",
            1000 / summary["partial_year"]["median_ms"],
            "pages/s",
            "a week of history",
            1000 / summary["partial_week"]["median_ms"],
            "pages/s",
            HISTORY_GOAL,
        ),
    ]
    s = summary
    notes = [
        "Dashboard (in-process Django test client, PostgreSQL, DEBUG off), median / p95 ms: "
        f"bare view {s['bare']['median_ms']:.2f} / {s['bare']['p95_ms']:.2f}; "
        f"an empty household view (the session read with its user, household and tariff: the floor of any "
        f"household page) "
        f"{s['household_floor']['median_ms']:.2f} / {s['household_floor']['p95_ms']:.2f}; "
        f"page {s['page_year']['median_ms']:.2f} / {s['page_year']['p95_ms']:.2f} (year of history), "
        f"{s['page_week']['median_ms']:.2f} / {s['page_week']['p95_ms']:.2f} (week); "
        f"chart partial, cache hit {s['partial_year']['median_ms']:.2f} / {s['partial_year']['p95_ms']:.2f} "
        f"(year), {s['partial_week']['median_ms']:.2f} / {s['partial_week']['p95_ms']:.2f} (week); "
        f"cache miss {s['partial_year_miss']['median_ms']:.2f} / {s['partial_year_miss']['p95_ms']:.2f} (year).",
        f"Dashboard SQL statements: page {queries['page_year']} (year of history) and {queries['page_week']} (week), "
        f"chart partial {queries['partial_year']} and {queries['partial_week']} (cache hits), "
        f"{queries['partial_year_miss']} (cache miss) "
        "(the session's, with its user, household and tariff, included; under gunicorn Django's connection "
        "health check adds a SELECT 1 per request, not counted and not sent in process).",
        "Dashboard chart partial by range, cache misses, median ms: "
        + "; ".join(f"{name} {figures['median_ms']:.2f}" for name, figures in ranges.items())
        + ". A year range aggregates a year of lines; it grows with the range shown, not with the history.",
    ]
    data = {
        "notes": notes,
        "config": {
            "rounds": options.rounds,
            "requests_per_round": per_round,
            "range_samples": RANGE_SAMPLES,
            "client": "django.test.Client, in process",
            "tariff": "time of use (price curve drawn)",
        },
        "setup": {key: value for key, value in setup.items() if not key.endswith(("_user", "_household_id"))},
        "latency": summary,
        "ranges": ranges,
        "queries": queries,
        "seconds": time.perf_counter() - began,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


# --- Data -----------------------------------------------------------------------------------------


Get = Callable[[], object] | tuple[Callable[[], object], Callable[[], object]]  # a request, or (untimed step, request)


def _stale(household_id: int) -> Callable[[], None]:
    """Raise the household's usage version as a ledger write does: its next chart is a cache miss."""

    def stale() -> None:
        from meters.usage import bump_usage_version

        bump_usage_version([household_id])

    return stale


def _setup() -> dict:
    from django.utils import timezone

    from energypay.accounts.models import User
    from lib.periods import HOUR, floor_hour
    from meters.models import HourlyUsage, Household, Meter, Reading, Tariff, TariffVersion
    from payments.models import PriceQuote, Utxo
    from payments.wallets import open_wallet

    began = time.perf_counter()
    now = timezone.now()
    tariff = Tariff.objects.create(name="Bench dashboard time of use")
    version = TariffVersion.objects.create(
        tariff=tariff,
        valid_from=floor_hour(now) - timedelta(days=800),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=BANDS,
    )
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=now - timedelta(minutes=1))
    counts = {"usage lines": 0, "readings": 0}
    users = {}
    for name, days in (("year", 365), ("week", 7)):
        user = User.objects.create_user(f"dashboard-{name}@example.com")  # no password: no slow hashing
        household = Household.objects.create(user=user, name=f"Dashboard bench ({name})", tariff=tariff)
        meter = Meter.objects.create(serial=f"DASH-{name.upper()}", household=household)
        Utxo.objects.create(
            wallet=open_wallet(household), txid=f"{household.pk:064x}", vout=0, satoshis=50_000_000, raw_parent="00"
        )
        end = floor_hour(now)
        start = end - timedelta(days=days)
        lines = []
        hour = start
        while hour <= end:
            # A daily shape: 0.2 to 1.3 kWh an hour, all priced at 0.2 EUR/kWh (the figures need not match the bands).
            kwh = Decimal(200 + (hour.hour * 37) % 1100) / 1000
            settled = hour + timedelta(minutes=65) if hour < end - HOUR else None
            lines.append(
                HourlyUsage(
                    household=household,
                    meter=meter,
                    hour_start=hour,
                    kwh=kwh,
                    tariff_version=version,
                    rate=Decimal("0.2"),
                    cost_eur=kwh * Decimal("0.2"),
                    settled_at=settled,
                )
            )
            lines.append(
                HourlyUsage(
                    household=household,
                    kind=HourlyUsage.Kind.STANDING,
                    hour_start=hour,
                    tariff_version=version,
                    cost_eur=Decimal("0.010000"),
                    settled_at=settled,
                )
            )
            hour += HOUR
        HourlyUsage.objects.bulk_create(lines, batch_size=BATCH)
        counts["usage lines"] += len(lines)
        readings = [
            Reading(
                meter=meter,
                household=household,
                timestamp=start + timedelta(minutes=15 * n),
                energy_kwh=Decimal(n) / 8,
                received_at=now,
            )
            for n in range(days * 96 + 1)
        ]
        Reading.objects.bulk_create(readings, batch_size=BATCH)
        counts["readings"] += len(readings)
        users[f"{name}_user"] = user
        users[f"{name}_household_id"] = household.pk
    _analyze()
    return {
        "seconds": time.perf_counter() - began,
        "rows": ", ".join(f"{count:,} {what}" for what, count in counts.items()),
        **counts,
        **users,
    }


def _analyze() -> None:
    """Fresh statistics and visibility map, as autovacuum would leave them soon after a bulk load."""
    from django.db import connection

    from meters.models import HourlyUsage, Reading

    with connection.cursor() as cursor:
        for model in (HourlyUsage, Reading):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")


def _add_floor_view() -> None:
    """Serve, in this process only, a household view that does nothing: login, session and household lookup.

    The partial's distance from it is what the dashboard's own code costs.
    """
    from django.http import HttpResponse
    from django.urls import clear_url_caches, path

    from meters.access import household_required
    from tests.bench import urls

    @household_required
    def household_floor(request):
        return HttpResponse(request.household.name)

    if not any(str(pattern.pattern) == FLOOR_PATH[1:] for pattern in urls.urlpatterns):
        urls.urlpatterns.insert(0, path(FLOOR_PATH[1:], household_floor))
        clear_url_caches()


def _client(user):
    from django.test import Client

    client = Client(HTTP_HOST=HOST)
    if user is not None:
        client.force_login(user)
    return client


def _check_answers(urls: dict[str, Get]) -> None:
    for name, get in urls.items():
        if isinstance(get, tuple):
            get[0]()
            get = get[1]
        response = get()
        if response.status_code != 200:
            raise RuntimeError(f"{name}: {response.status_code} {response.content[:300]!r}")
        if name.startswith("partial") and b"<html" in response.content:
            raise RuntimeError(f"{name}: the htmx request got the whole page")


# --- Measuring ------------------------------------------------------------------------------------


def _measure(urls: dict[str, Get], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Seconds per request of each URL: warm-up, then ``rounds`` x ``per_round`` requests each.

    The URLs take turns request by request, in a new (seeded) order each turn, so neither a burst of
    load from other processes nor the work one request leaves behind for the next (the garbage
    collector's) weighs on one URL more than on another: the ratios compare the same moments. A URL
    given as (step, request) runs its step, untimed, before each request.
    """
    steps = {name: get if isinstance(get, tuple) else (lambda: None, get) for name, get in urls.items()}
    for before, get in steps.values():
        for _ in range(max(10, per_round // 4)):
            before()
            get()
    samples: dict[str, list[float]] = {name: [] for name in urls}
    turns = [(*steps[name], samples[name]) for name in urls]
    order = random.Random(ORDER_SEED)
    for _ in range(rounds * per_round):
        order.shuffle(turns)
        for before, get, timed in turns:
            before()
            began = time.perf_counter()
            get()
            timed.append(time.perf_counter() - began)
    return samples


def _summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "requests": len(ordered),
        "median_ms": 1000 * statistics.median(ordered),
        "p95_ms": 1000 * ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean_ms": 1000 * statistics.fmean(ordered),
    }


def _queries(year, week, htmx: dict, miss_year: Callable[[], None]) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = {}
    for name, before, get in (
        ("page_year", None, lambda: year.get("/")),
        ("page_week", None, lambda: week.get("/")),
        ("partial_year", None, lambda: year.get("/", **htmx)),
        ("partial_week", None, lambda: week.get("/", **htmx)),
        ("partial_year_miss", miss_year, lambda: year.get("/", **htmx)),
    ):
        if before is not None:
            before()
        else:
            get()  # a hit is counted as a hit: the misses measured before may have raised the version
        with CaptureQueriesContext(connection) as captured:
            get()
        counts[name] = len(captured)
        counts[f"{name}_sql"] = [query["sql"][:300] for query in captured.captured_queries]
    return counts


def _profile(urls: dict[str, Get], count: int = 500) -> None:
    """cProfile ``count`` requests of each URL in-process (``var/bench/dashboard-<name>.prof``)."""
    for name, get in urls.items():
        before, get = get if isinstance(get, tuple) else (lambda: None, get)
        profiler = cProfile.Profile()
        elapsed = 0.0
        for _ in range(count):
            before()
            began = time.perf_counter()
            profiler.enable()
            get()
            profiler.disable()
            elapsed += time.perf_counter() - began
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        dump = OUTPUT_DIR / f"dashboard-{name}.prof"
        profiler.dump_stats(dump)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(45)
        each = elapsed / count * 1000
        print(f"\n=== profile: {count} chart partial requests ({name}) in-process, {each:.2f} ms each ({dump})")
        print(out.getvalue())
