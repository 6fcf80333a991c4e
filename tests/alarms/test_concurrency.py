"""Two workers at once: one event per transition and one email per event (PostgreSQL's row locks)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import time_machine
from django.core import mail
from django.db import connection, connections

from alarms import evaluation, notify
from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind
from tests.alarms.conftest import make_home_for

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what is under test; SQLite serializes"),
    pytest.mark.django_db(transaction=True),
]
NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
WORKERS = 4


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def run_at_once(job) -> list:
    results, errors = [], []

    def work() -> None:
        try:
            results.append(job())
        except Exception as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


@pytest.fixture
def firing_home(make_household, quote):
    home = make_home_for(make_household())
    home.set_hour(datetime(2026, 11, 18, 1, tzinfo=UTC), eur="6")
    return home


def test_workers_evaluating_the_same_data_at_once_write_one_event(firing_home, monkeypatch):
    rule = firing_home.rule(Kind.DAILY_COST, "5")
    # Every worker has read the rule as not firing and measured EUR 6 before any of them writes.
    everyone_measured = threading.Barrier(WORKERS, timeout=10)
    real_condition = evaluation.condition

    def condition_then_wait(*args):
        holds = real_condition(*args)
        everyone_measured.wait()
        return holds

    monkeypatch.setattr(evaluation, "condition", condition_then_wait)
    tallies = run_at_once(lambda: evaluation.evaluate_households([firing_home.household.pk]))
    assert sorted(t.get("fired", 0) for t in tallies) == [0] * (WORKERS - 1) + [1]
    assert sum(t.get("raced", 0) for t in tallies) == WORKERS - 1
    assert AlarmEvent.objects.filter(rule=rule).count() == 1
    assert AlarmRule.objects.get(pk=rule.pk).firing
    assert notify.send_due() == {"sent": 1}
    assert len(mail.outbox) == 1


def test_workers_sending_at_once_mail_each_event_once(firing_home, settings):
    settings.EMAIL_BACKEND = "tests.alarms.backends.SlowBackend"
    for threshold in ("1", "2", "3"):
        firing_home.rule(Kind.DAILY_COST, threshold)
    evaluation.evaluate_households([firing_home.household.pk])
    tallies = run_at_once(notify.send_due)
    assert sum(t.get("sent", 0) for t in tallies) == 3
    assert len(mail.outbox) == 3
    assert sorted(m.subject for m in mail.outbox) == sorted(
        f"EnergyPay alarm: Tell me when a day costs €{n}.00 or more" for n in (1, 2, 3)
    )
    assert not AlarmEvent.objects.filter(notified_at__isnull=True).exists()
