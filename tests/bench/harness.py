"""What every benchmark needs: a fresh PostgreSQL database, Django on it, gunicorn, wrk, machine facts.

The database, cache and server settings are production-like on purpose (PostgreSQL, Redis cache,
DEBUG off, gunicorn), so the figures say what this machine can do in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
from bsv.constants import Network
from bsv.hd.bip32 import master_xprv_from_seed

ROOT = Path(__file__).resolve().parents[2]
# Raw figures, logs and profiles; BENCH_OUTPUT_DIR puts them elsewhere (the test that runs every benchmark).
OUTPUT_DIR = Path(os.environ.get("BENCH_OUTPUT_DIR") or ROOT / "var" / "bench")
PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgres://postgres@127.0.0.1:5432")
# Two people benchmarking on one server each name their own database (BENCH_DB_NAME); the scale
# benchmark adds two beside it (<name>_empty, <name>_10m).
DB_NAME = os.environ.get("BENCH_DB_NAME", "energypay_bench")
DATABASE_URL = f"{PG_SERVER}/{DB_NAME}"

# What both the benchmark process and gunicorn run with.
ENVIRONMENT = {
    "DJANGO_SETTINGS_MODULE": "tests.bench.settings",
    "DATABASE_URL": DATABASE_URL,
    "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/9"),
    "DEBUG": "false",
    "SECRET_KEY": "bench",
    "ALLOWED_HOSTS": "127.0.0.1",
    # Production terminates TLS at a proxy in front of gunicorn; the bench speaks plain HTTP on
    # loopback, which DEBUG off would otherwise answer with a redirect to https.
    "SECURE_SSL_REDIRECT": "false",
    # The production default (60 a minute per meter) would answer 429 to almost every request.
    "INGEST_RATE_LIMIT_PER_MINUTE": "100000000",
    # The bench posts a history from 300 days back (tests/bench/ingest.py HISTORY): bill it, do not hold it.
    "INGEST_BACKFILL_DAYS": "400",
    # DEBUG off needs a wallet key: a throwaway one per run, never written down.
    "WALLET_MASTER_KEY": str(master_xprv_from_seed(secrets.token_bytes(64), Network.TESTNET)),
    # Settlement is measured on the in-database ledger, whatever the shell says.
    "BSV_NETWORK": "local",
}


def setup_django() -> None:
    """Point this process at a freshly created bench database and migrate it."""
    os.environ.update(ENVIRONMENT)
    _recreate_database()
    import django
    from django.core.cache import cache
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    cache.clear()  # the bench's own Redis database: stale rate counters of an earlier run


def drop_database(name: str = DB_NAME) -> None:
    from django.db import connections

    connections.close_all()
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _recreate_database(name: str = DB_NAME, template: str | None = None) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def copy_database(name: str, template: str) -> None:
    """``name``, a fresh copy of ``template`` (nobody may be connected to it meanwhile)."""
    from django.db import connections

    connections.close_all()
    _recreate_database(name, template)


def use_database(name: str) -> None:
    """Point this process's Django connection (and its cache keys) at another database of the server.

    Both databases hold the same ids, so each gets its own cache key prefix: a chart cached for one
    is never served for the other.
    """
    from django.core.cache import cache
    from django.db import connection

    if connection.settings_dict["NAME"] != name:
        connection.close()
        connection.settings_dict["NAME"] = name
        cache.key_prefix = f"bench-{name}"
    connection.ensure_connection()


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), cpu)
    with psycopg.connect(DATABASE_URL) as connection:
        postgres = connection.execute("SHOW server_version").fetchone()[0]
    ram_gib = None
    with contextlib.suppress(OSError, StopIteration, ValueError), open("/proc/meminfo") as meminfo:
        ram_gib = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1]) / 2**20
    import django
    import gunicorn

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": ram_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "django": django.get_version(),
        "gunicorn": gunicorn.__version__,
    }


def busy_cpu(seconds: float = 1.0) -> float:
    """The share of all cores other processes keep busy over ``seconds`` (0..1), while this one sleeps."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as stat:
            values = [int(value) for value in stat.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return idle, sum(values[:8])  # without guest time, which is already in user

    try:
        idle_before, total_before = sample()
        time.sleep(seconds)
        idle_after, total_after = sample()
    except OSError:
        return 0.0
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """pid -> user and system CPU seconds used so far (/proc/<pid>/stat), for those still running."""
    used = {}
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return used


def backend_pids() -> list[int]:
    """The PostgreSQL backends serving the bench database, but this process's own."""
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (DB_NAME,)
        ).fetchall()
    return [pid for (pid,) in rows]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def gunicorn_server(
    workers: int, worker_class: str = "sync", *, database: str = DB_NAME
) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve the project (with the bench URLs) under gunicorn; yield its base URL and the master process."""
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log_path = OUTPUT_DIR / ("gunicorn.log" if database == DB_NAME else f"gunicorn-{database}.log")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "energypay.wsgi:application",
        f"--bind=127.0.0.1:{port}",
        f"--workers={workers}",
        f"--worker-class={worker_class}",
        "--log-level=warning",
    ]
    # gunicorn reads the shipped gunicorn.conf.py from ROOT (timeouts, header limits); the bench turns
    # off what would skew its figures: an access-log line per request (it costs the bare view about
    # as much as the view itself) and worker recycling after max_requests (memory rounds need one worker).
    quiet = {"GUNICORN_ACCESS_LOG": "", "GUNICORN_MAX_REQUESTS": "0"}
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **ENVIRONMENT, **quiet, "DATABASE_URL": f"{PG_SERVER}/{database}"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(f"{base_url}/bench/bare", server, log_path)
        yield base_url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(url: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError, urllib.error.URLError),
            urllib.request.urlopen(url, timeout=2) as response,  # noqa: S310 (our own http URL)
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer {url} within 30 s:\n{log_path.read_text()[-3000:]}")


def ensure_wrk() -> str:
    """The path of wrk, installing the Debian package when it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk is missing: apt-get install -y wrk", flush=True)
    apt = ["apt-get", "install", "-y", "-q", "wrk"]
    if os.geteuid() != 0 and shutil.which("sudo"):
        apt.insert(0, "sudo")
    subprocess.run(apt, check=False, stdout=subprocess.DEVNULL)
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed for the HTTP benchmarks: install it with `apt-get install wrk`.")
    return found


def wrk(url: str, script: Path, args: list[str], *, seconds: float, connections: int, threads: int = 1) -> dict:
    """Run wrk with a Lua script whose ``done()`` prints one ``WRK_JSON {...}`` line; return that dict."""
    command = [
        ensure_wrk(),
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",
        f"--script={script}",
        url,
        "--",
        *args,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    marker = "WRK_JSON "
    lines = [line for line in run.stdout.splitlines() if line.startswith(marker)]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    result = json.loads(lines[-1].removeprefix(marker))
    result["seconds"] = result["duration_us"] / 1e6
    result["errors"] = sum(value for key, value in result.items() if key.startswith("errors_"))
    return result
