"""A web worker's steady-state memory: gunicorn under ingest and dashboard load, beside the same worker idle.

1. gunicorn with ``--workers`` sync workers, as in the ingest benchmark. A second of wrk on the bare
   view makes every worker answer (URLconf, middleware and views imported); then each worker's RSS
   is read: the baseline, a warm worker before any real load.
2. ``ROUNDS`` rounds of load, each URL for a few seconds in turn: single-reading POSTs from
   ``SINGLE_METERS`` new meters (wrk, as the ingest benchmark), the dashboard page and the year chart
   partial (htmx) of a household with a year of history (the dashboard benchmark's, or made here
   when that benchmark did not run), logged in with a real session cookie.
3. After each round, every worker's RSS, peak RSS (VmHWM), PSS and USS (smaps_rollup). The figure
   is the largest worker after the last round, beside its own baseline; its RSS after each round
   shows whether it has stopped growing. Also, for reference, a bare ``django.setup()`` process.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

from tests.bench import procmem
from tests.bench.harness import ENVIRONMENT, ROOT, gunicorn_server, wrk
from tests.bench.ingest import HISTORY, SINGLE_METERS, _Endpoint, flat_meters
from tests.bench.report import Row, say

MEMORY_GOAL = 1.5  # a loaded worker holds at most 1.5x what it held warm and idle
ROUNDS = 6
GET_SCRIPT = Path(__file__).with_name("get.lua")
DASHBOARD_CONNECTIONS = 4
YEAR_EMAIL = "dashboard-year@example.com"  # the dashboard benchmark's household with a year of history


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("memory")
    group.add_argument("--memory-seconds", type=float, default=4, help="seconds of load per URL and round (default 4)")


def run(options: argparse.Namespace) -> tuple[list[Row], dict]:
    bare = procmem.bare_django(ENVIRONMENT, ROOT)
    say(f"a bare django.setup() process: {procmem.describe(bare)}")
    cookie = _session_cookie(_year_user())
    meters = _meters()
    tokens = [token for _, token in meters]
    start_epoch = int((datetime.now(UTC) - HISTORY).timestamp()) // 60 * 60
    seconds = options.memory_seconds
    with tempfile.NamedTemporaryFile("w", suffix=".tokens") as tokens_file:
        tokens_file.write("\n".join(tokens) + "\n")
        tokens_file.flush()
        with gunicorn_server(options.workers, options.worker_class) as (base_url, server):
            _check_pages(base_url, cookie)
            wrk(f"{base_url}/bench/bare", GET_SCRIPT, ["", ""], seconds=1, connections=DASHBOARD_CONNECTIONS)
            time.sleep(0.5)
            workers = procmem.children(server.pid)
            idle = {pid: procmem.snapshot(pid) for pid in workers}
            say(f"{len(workers)} warm idle workers: " + "; ".join(procmem.describe(found) for found in idle.values()))
            meter_ids = [meter_id for meter_id, _ in meters]
            ingest = _Endpoint(
                base_url,
                server.pid,
                "/api/v1/readings",
                tokens_file.name,
                meter_ids,
                start_epoch,
                options.ingest_connections,
            )
            loads = {
                "ingest": lambda: ingest.load(seconds) or 0,  # counted from ingest.rounds below
                "dashboard page": lambda: _get(f"{base_url}/", cookie, "", seconds),
                "year chart partial": lambda: _get(f"{base_url}/?range=year", cookie, "htmx", seconds),
            }
            say(f"load: {ROUNDS} rounds of {seconds:g} s each for {', '.join(loads)}")
            rounds, requests_made = [], dict.fromkeys(loads, 0)
            for number in range(ROUNDS):
                for name, load in loads.items():
                    requests_made[name] += load()
                time.sleep(0.5)  # requests still in flight finish; the figure is at rest
                rounds.append({pid: procmem.snapshot(pid) for pid in workers})
                say(f"  after round {number + 1}: " + "; ".join(procmem.describe(f) for f in rounds[-1].values()))
            if procmem.children(server.pid) != workers:
                say("WARNING memory: gunicorn replaced a worker during the load (see var/bench/gunicorn.log)")
    requests_made["ingest"] = sum(r["requests"] for r in ingest.rounds)
    errors = sum(r["errors"] for r in ingest.rounds)
    if errors:
        say(f"WARNING memory: {errors} ingest requests failed")

    largest = max(workers, key=lambda pid: rounds[-1][pid]["rss"])
    after, before = rounds[-1][largest], idle[largest]
    trend = ", ".join(f"{snapshots[largest]['rss']:.0f}" for snapshots in rounds)
    rows = [
        Row(
            "memory: web worker after ingest + dashboard load",
            after["rss"],
            "MB",
            "the same worker warm and idle",
            before["rss"],
            "MB",
            goal=0,
            max_ratio=MEMORY_GOAL,
        )
    ]
    notes = [
        f"Web worker memory (gunicorn, {options.workers} {options.worker_class} workers; the largest worker): "
        f"warm and idle {procmem.describe(before)}; after {ROUNDS} rounds of {seconds:g} s each of single-reading "
        f"POSTs, the dashboard page and its year chart partial (a year of history), {procmem.describe(after)}, "
        f"peak {after['peak_rss']:.0f} MB; RSS after each round {trend} MB "
        f"({', '.join(f'{n:,} {name}' for name, n in requests_made.items())} requests). "
        f"A bare django.setup() process: {procmem.describe(bare)}.",
    ]
    data = {
        "notes": notes,
        "config": {
            "gunicorn_workers": options.workers,
            "gunicorn_worker_class": options.worker_class,
            "rounds": ROUNDS,
            "seconds_per_url_and_round": seconds,
            "ingest_connections": options.ingest_connections,
            "dashboard_connections": DASHBOARD_CONNECTIONS,
        },
        "bare_django_setup": bare,
        "idle": {str(pid): found for pid, found in idle.items()},
        "after_rounds": [{str(pid): found for pid, found in snapshots.items()} for snapshots in rounds],
        "requests": requests_made,
        "largest_worker": largest,
        "rows": [row.as_json() for row in rows],
    }
    return rows, data


def _get(url: str, cookie: str, htmx: str, seconds: float) -> int:
    result = wrk(url, GET_SCRIPT, [cookie, htmx], seconds=seconds, connections=DASHBOARD_CONNECTIONS)
    if result["errors"]:
        say(f"WARNING memory: {result['errors']} of {result['requests']} requests to {url} failed")
    return result["requests"]


def _check_pages(base_url: str, cookie: str) -> None:
    """The session works under gunicorn: the page and the partial answer 200, not a login redirect."""
    for path, headers in (("/", {}), ("/?range=year", {"HX-Request": "true"})):
        response = requests.get(
            base_url + path, headers={"Cookie": cookie, **headers}, allow_redirects=False, timeout=30
        )
        if response.status_code != 200:
            raise RuntimeError(f"memory: GET {path} answered {response.status_code}: {response.text[:300]}")


def _year_user():
    from energypay.accounts.models import User
    from tests.bench import dashboard

    user = User.objects.filter(email=YEAR_EMAIL).first()
    if user is None:
        say("setup: a household with a year of history (the dashboard benchmark's setup) ...")
        user = dashboard._setup()["year_user"]
    return user


def _session_cookie(user) -> str:
    """A real login session in the database, as the browser would hold it after logging in."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _meters() -> list[tuple[int, str]]:
    """``SINGLE_METERS`` new meters (the ingest endpoint's rotation assumes that many): (id, token) each."""
    return flat_meters(SINGLE_METERS, name="Memory bench", serial="MEM", email="memory{}@bench.example")
