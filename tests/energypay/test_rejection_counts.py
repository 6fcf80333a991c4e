"""Rejected readings are counted by reason per UTC hour, after ingest commits; accepted ones cost nothing."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from energypay.ops.models import RejectionCount
from energypay.ops.rejections import REASONS, reason_for, record
from tests.meters.ingestkit import accepted

NOW = datetime(2026, 11, 22, 12, 20, tzinfo=UTC)
HOUR = datetime(2026, 11, 22, 12, tzinfo=UTC)


@pytest.fixture
def post(client, meter_and_token, django_capture_on_commit_callbacks, settings):
    _, token = meter_and_token
    settings.USAGE_CHANGED_HOOK = ""  # alarms would start a thread to enqueue their evaluation

    def send(*readings: dict, at: datetime = NOW):
        # The test's transaction never commits: run what ingest leaves for after its commit.
        with time_machine.travel(at, tick=False), django_capture_on_commit_callbacks(execute=True):
            return accepted(client, token, list(readings))

    return send


def reading(minutes_ago: int, kwh, *, at: datetime = NOW) -> dict:
    return {"timestamp": (at - timedelta(minutes=minutes_ago)).isoformat(), "energy_kwh": kwh}


def counts() -> dict[tuple[datetime, str], int]:
    return {(row.hour_start, row.reason): row.count for row in RejectionCount.objects.all()}


def test_every_rejection_ingest_gives_is_counted_under_its_reason(post):
    post(reading(60, 100))
    answer = post(
        reading(-10, 101),  # future
        {"timestamp": "2026-11-22T12:00:00", "energy_kwh": 101},  # no time zone
        reading(60, 99),  # conflicts with the stored 100
        reading(50, 200),  # 100 kWh in 10 minutes: 600 kW
        reading(40, "NaN"),
        reading(40, -1),
        {"timestamp": "2026-11-22T12:00:00Z"},  # no energy_kwh
        {"timestamp": "2026-11-22T12:00:00Z", "energy_kwh": "1.0001"},  # too many decimals
        reading(60 * 24 * 8, 50),  # older than the 7-day backfill window: held
        reading(60 * 24 * 365 * 7, 40),  # before the meter's installation (2020-01-01): out of its range
        reading(30, 100.5),  # fine
    )
    assert answer["accepted"] == 1 and len(answer["rejected"]) == 10
    assert [reason_for(item["code"]) for item in answer["rejected"]] == [
        "future",
        "naive",
        "conflict",
        "max_power",
        "not_finite",
        "negative",
        "malformed",
        "malformed",
        "too_old",
        "out_of_range",
    ]
    counted = {(HOUR, reason): 1 for reason in REASONS if reason not in {"malformed", "before_installation"}}
    assert counts() == counted | {(HOUR, "malformed"): 2}


def test_codes_are_counted_by_code_never_by_sentence():
    assert reason_for("reading.before_installation") == "before_installation"
    assert reason_for("reading.missing_field") == "malformed"
    assert reason_for("reading.something_new") == "malformed"
    # A sentence is not a code, whatever words it holds.
    assert reason_for("timestamp is more than 5 minutes in the future") == "malformed"


def test_counts_add_up_within_the_hour_and_start_again_in_the_next(post):
    post(reading(-10, 1), reading(-20, 2))
    post(reading(-10, 1))
    post(reading(-10, 1, at=NOW + timedelta(hours=1)), at=NOW + timedelta(hours=1))
    assert counts() == {(HOUR, "future"): 3, (HOUR + timedelta(hours=1), "future"): 1}


def test_an_accepted_batch_touches_no_counter(post):
    with CaptureQueriesContext(connection) as queries:
        post(reading(30, 1), reading(15, 2))
    assert not any("ops_rejectioncount" in query["sql"] for query in queries.captured_queries)
    assert not RejectionCount.objects.exists()


def test_a_request_with_rejections_adds_one_statement_after_its_commit(post):
    with CaptureQueriesContext(connection) as queries:
        post(reading(-10, 1), reading(-20, 2), {"timestamp": "x", "energy_kwh": 1})
    writes = [query["sql"] for query in queries.captured_queries if "ops_rejectioncount" in query["sql"]]
    assert len(writes) == 1 and "ON CONFLICT" in writes[0]


def test_a_failing_count_never_fails_the_meter(post, monkeypatch, caplog):
    def broken(codes, now):
        raise RuntimeError("counter table is gone")

    monkeypatch.setattr("energypay.ops.rejections.record", broken)
    from meters.hooks import load_hook

    load_hook.cache_clear()
    try:
        answer = post(reading(-10, 1))
    finally:
        load_hook.cache_clear()
    assert len(answer["rejected"]) == 1
    assert "counter table is gone" in caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer at a time anyway")
def test_concurrent_requests_lose_no_count():
    threads, per_thread, rounds = 4, 3, 10

    def work():
        try:
            for _ in range(rounds):
                record(["reading.future"] * per_thread, NOW)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert counts() == {(HOUR, "future"): threads * per_thread * rounds}
