"""Scale-out: two separate Celery worker processes settle one hour between them, and each household is paid once.

The hourly run's fan-out (payments.tasks.settle_closed_hour: ``runs.prepare_run``, then one
``settle_chunk`` task per chunk) is done here with CHUNK households a chunk so that one hour makes
several tasks. They go to a Redis broker of this test's own (database REDIS_DB, flushed before and
after; this process's Celery app keeps its in-memory broker, see tests/conftest.py) on a queue only
the two workers read, ``celery -A energypay worker --pool=solo --concurrency 1`` named w1 and w2,
each started as a subprocess on the test database. Each worker's log says which chunks it received.

Bounded: workers must be ready within READY_TIMEOUT seconds and the hour settled within
DEADLINE; they are stopped in ``finally``. Measured on 2 cores: ~10 s, most of it the workers starting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery
from django.conf import settings
from django.db import connection
from django.utils import timezone

from lib.periods import HOUR, floor_hour
from payments import runs
from payments.models import Settlement
from tests.payments import crashkit

REDIS_DB = int(os.environ.get("SCALE_OUT_REDIS_DB", "13"))
BROKER_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
QUEUE = "settle-scale-out"
HOUSEHOLDS = 300
CHUNK = 25  # twelve tasks for the hour
READY_TIMEOUT = 45  # seconds for both workers to connect to the broker
DEADLINE = 60  # seconds for the hour to be settled once the tasks are sent
RECEIVED = re.compile(r"Task payments\.tasks\.settle_chunk\[[0-9a-f-]+\] received")
SUCCEEDED = re.compile(r"Task payments\.tasks\.settle_chunk\[[0-9a-f-]+\] succeeded")


def _redis():
    try:
        import redis

        client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=1, socket_timeout=5)
        client.ping()
        return client
    except Exception:  # no redis module or no server: the test is skipped
        return None


pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="worker processes share the test database"),
    pytest.mark.skipif(settings.BSV_NETWORK != "local", reason="the books are checked against the local ledger"),
    pytest.mark.skipif(_redis() is None, reason=f"needs Redis at {BROKER_URL}"),
]


def start_worker(name: str, log: Path) -> subprocess.Popen:
    with log.open("w") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "energypay",
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "-Q",
                QUEUE,
                "-n",
                f"{name}@%h",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=settings.BASE_DIR,
            env=crashkit.child_env(CELERY_BROKER_URL=BROKER_URL, LOG_LEVEL="WARNING"),
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def stop(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()  # warm shutdown: a task under way finishes first
    for worker in workers:
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


@pytest.mark.django_db(transaction=True)
def test_two_worker_processes_share_one_hour_and_pay_each_household_once(tmp_path):
    broker = _redis()
    broker.flushdb()
    town = crashkit.build_town(HOUSEHOLDS)
    hour = floor_hour(timezone.now()) - 2 * HOUR
    crashkit.add_hour(town, hour)
    crashkit.fresh_quote()
    period_end = hour + HOUR
    logs = {name: tmp_path / f"{name}.log" for name in ("w1", "w2")}
    workers = []
    producer = Celery("scale-out-test", broker=BROKER_URL)
    began = time.monotonic()
    try:
        workers = [start_worker(name, log) for name, log in logs.items()]
        wait_for(
            lambda: (
                all(" ready." in log.read_text() for log in logs.values()) or any(w.poll() is not None for w in workers)
            ),
            READY_TIMEOUT,
            "both workers to be ready",
        )
        assert all(w.poll() is None for w in workers), {name: log.read_text()[-2000:] for name, log in logs.items()}
        ready = time.monotonic()

        # What settle_closed_hour does, with smaller chunks: one task per chunk, any worker takes it.
        chunks = list(runs.chunks(runs.prepare_run(period_end), CHUNK))
        for chunk in chunks:
            producer.send_task("payments.tasks.settle_chunk", args=[chunk, period_end.isoformat()], queue=QUEUE)

        def finished() -> bool:
            return sum(len(SUCCEEDED.findall(log.read_text())) for log in logs.values()) >= len(chunks)

        wait_for(finished, DEADLINE, f"{len(chunks)} chunks to be settled")
        settled = time.monotonic()
    finally:
        stop(workers)
        producer.close()
        broker.flushdb()

    received = {name: len(RECEIVED.findall(log.read_text())) for name, log in logs.items()}
    print(
        f"workers ready in {ready - began:.1f} s, hour settled in {settled - ready:.1f} s, chunks per worker {received}"
    )
    assert len(chunks) == -(-HOUSEHOLDS // CHUNK)
    assert sum(received.values()) == len(chunks)
    assert all(count > 0 for count in received.values()), received  # both did some of the work
    paid = Settlement.objects.filter(household_id__in=town.household_ids)
    assert sorted(paid.values_list("household_id", flat=True)) == sorted(town.household_ids)  # once each
    assert set(paid.values_list("state", flat=True)) == {Settlement.State.SEEN}
    assert crashkit.check_books(town, period_end) == []
