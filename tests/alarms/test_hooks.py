"""Ingest and settlement tell alarms what changed, without waiting for it and without ever failing because of it."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from kombu.exceptions import OperationalError

from alarms import hooks, tasks
from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind
from meters.models import Reading
from payments import runs

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "/api/v1/readings"


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=True):  # ticking: the batcher's timer thread needs real time to pass
        yield


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple[list[int], str]]:
    """What would have gone to the broker: (household ids, scope) per task."""
    calls: list[tuple[list[int], str]] = []
    monkeypatch.setattr(tasks.evaluate_households, "delay", lambda ids, scope="all": calls.append((ids, scope)))
    return calls


@pytest.fixture
def broker_down(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")

    monkeypatch.setattr(tasks.evaluate_households, "delay", refuse)


@pytest.fixture
def post(client, django_capture_on_commit_callbacks):
    """POST one reading and run what was scheduled for after the commit, as a real request does.

    By default each call reads a minute later than the one before, 0.1 kWh more (6 kW: plausible).
    """
    minutes = iter(range(50, 0, -1))

    def send(token: str, minutes_ago: int | None = None, kwh: str | None = None) -> dict:
        minutes_ago = next(minutes) if minutes_ago is None else minutes_ago
        kwh = kwh or str(100 + (50 - minutes_ago) / 10)
        body = {"timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat(), "energy_kwh": kwh}
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                URL, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
            )
        assert response.status_code == 200, response.content
        return response.json()

    return send


def test_ingest_enqueues_one_task_per_window_for_every_household_it_saw(
    settings, post, make_meter, enqueued, _fresh_batcher
):
    settings.ALARM_USAGE_WINDOW_SECONDS = 60
    (first, first_token), (second, second_token) = make_meter(), make_meter()
    post(first_token)
    post(first_token)
    post(second_token)
    post(first_token)
    assert enqueued == []  # the window is still open
    _fresh_batcher.flush()  # what the window's timer does when it ends
    assert enqueued == [(sorted([first.household_id, second.household_id]), "usage")]
    _fresh_batcher.flush()
    assert len(enqueued) == 1


def test_the_window_timer_sends_the_batch_by_itself(settings, post, make_meter, enqueued):
    settings.ALARM_USAGE_WINDOW_SECONDS = 0.2
    meter, token = make_meter()
    for _ in range(5):
        post(token)
    deadline = time.monotonic() + 30  # generous for a loaded machine: the loop ends as soon as it is met
    while not enqueued and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a second task would come at the end of a second window, which nothing opened
    assert enqueued == [([meter.household_id], "usage")]
    post(token)  # a change after the batch left opens a new window
    deadline = time.monotonic() + 30  # generous for a loaded machine: the loop ends as soon as it is met
    while len(enqueued) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert enqueued == [([meter.household_id], "usage")] * 2


def test_a_flood_of_households_sends_a_task_per_full_batch(settings, _fresh_batcher, monkeypatch):
    settings.ALARM_USAGE_WINDOW_SECONDS = 60
    monkeypatch.setattr(hooks, "MAX_BATCH", 3)
    # What leaves for the broker, recorded at the hook's own edge: a full batch is sent from a thread
    # of its own, which must not depend on how another test left Celery's task object.
    enqueued: list[tuple[list[int], str]] = []
    monkeypatch.setattr(hooks, "_enqueue", lambda ids, scope: enqueued.append((ids, scope)))
    for household_id in range(1, 8):
        _fresh_batcher.add([household_id])
    deadline = time.monotonic() + 30  # generous for a loaded machine: the loop ends as soon as it is met
    while len(enqueued) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(enqueued) == [([1, 2, 3], "usage"), ([4, 5, 6], "usage")]
    _fresh_batcher.flush()
    assert enqueued[-1] == ([7], "usage")


def test_ingest_is_stored_and_answered_when_the_broker_is_down(settings, post, meter_and_token, broker_down, caplog):
    settings.ALARM_USAGE_WINDOW_SECONDS = 0  # send at once, inside the request's after-commit callbacks
    meter, token = meter_and_token
    with caplog.at_level(logging.ERROR, logger="alarms.hooks"):
        assert post(token)["accepted"] == 1
    assert Reading.objects.filter(meter=meter).count() == 1
    assert "alarm_enqueue_failed" in caplog.text


def test_ingest_survives_a_hook_that_cannot_even_be_imported(settings, post, meter_and_token, caplog):
    settings.USAGE_CHANGED_HOOK = "alarms.hooks.no_such_function"
    meter, token = meter_and_token
    with caplog.at_level(logging.ERROR, logger="meters.api"):
        assert post(token)["accepted"] == 1
    assert Reading.objects.filter(meter=meter).count() == 1
    assert "usage_changed_hook_failed" in caplog.text


def test_a_request_that_changes_nothing_schedules_nothing(settings, post, meter_and_token, enqueued):
    settings.ALARM_USAGE_WINDOW_SECONDS = 0
    _, token = meter_and_token
    assert post(token, minutes_ago=30, kwh="100")["accepted"] == 1
    assert post(token, minutes_ago=30, kwh="100")["duplicates"] == 1
    assert len(enqueued) == 1


def test_readings_that_cross_a_threshold_fire_the_rule_in_the_worker(
    settings, post, meter_and_token, monkeypatch, _fresh_batcher
):
    settings.ALARM_USAGE_WINDOW_SECONDS = 60
    monkeypatch.setattr(
        tasks.evaluate_households, "delay", lambda ids, scope: tasks.evaluate_households.apply(args=(ids, scope))
    )
    meter, token = meter_and_token
    rule = AlarmRule.objects.create(household=meter.household, kind=Kind.HOURLY_ENERGY, threshold=2)
    post(token, minutes_ago=50, kwh="100")
    post(token, minutes_ago=10, kwh="102")  # 2 kWh in the hour before 12:00
    _fresh_batcher.flush()
    rule.refresh_from_db()
    assert rule.firing
    assert AlarmEvent.objects.get().value == 2


def test_settlement_enqueues_one_task_per_chunk(db, monkeypatch, enqueued, django_capture_on_commit_callbacks):
    monkeypatch.setattr(runs, "_settle_chunk", lambda chunk, *args: Counter(nothing=len(chunk)))
    ids = list(range(1, runs.CHUNK + 2))
    with django_capture_on_commit_callbacks(execute=True):
        assert runs.settle_households(ids, NOW) == {"nothing": len(ids)}
    assert enqueued == [(ids[: runs.CHUNK], "settlement"), (ids[runs.CHUNK :], "settlement")]


def test_settlement_runs_on_when_the_broker_is_down(
    db, monkeypatch, broker_down, caplog, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(runs, "_settle_chunk", lambda chunk, *args: Counter(nothing=len(chunk)))
    with caplog.at_level(logging.ERROR), django_capture_on_commit_callbacks(execute=True):
        assert runs.settle_households([5, 6], NOW) == {"nothing": 2}
    assert "alarm_enqueue_failed" in caplog.text
