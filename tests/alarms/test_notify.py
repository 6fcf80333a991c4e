"""The outbox: every event is mailed once it can be, a failing backend is retried with backoff, nothing is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

from alarms import notify
from alarms.evaluation import evaluate_households
from alarms.models import AlarmEvent
from alarms.rules import Kind

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
REFUSING = "tests.alarms.backends.RefusingBackend"

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def fired(home) -> AlarmEvent:
    """A daily-cost alarm that has just gone off (EUR 6.20 against EUR 5)."""
    home.rule(Kind.DAILY_COST, "5")
    home.set_hour(datetime(2026, 11, 18, 1, tzinfo=UTC), eur="6.2")
    evaluate_households([home.household.pk])
    return AlarmEvent.objects.get()


def test_the_email_says_what_went_off_with_the_value_and_the_local_time(fired, settings):
    settings.SITE_URL = "https://energypay.example/"
    assert notify.send_due() == {"sent": 1}
    [message] = mail.outbox
    assert message.to == ["home@example.com"]
    assert message.subject == "EnergyPay alarm: Tell me when a day costs €5.00 or more"
    assert "It is now €6.20 (your threshold: €5.00)." in message.body
    assert "Wednesday 18 November 2026, 11:00 (Europe/Madrid)" in message.body
    assert "https://energypay.example/alarms/" in message.body
    fired.refresh_from_db()
    assert (fired.notified_at, fired.attempts, fired.next_attempt_at) == (NOW, 1, None)


def test_a_failing_backend_is_retried_with_backoff_and_the_event_is_sent_once_it_works(fired, settings, time_machine):
    settings.EMAIL_BACKEND = REFUSING
    assert notify.send_due() == {"failed": 1}
    fired.refresh_from_db()
    assert fired.notified_at is None
    assert fired.attempts == 1
    assert fired.last_error == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert fired.next_attempt_at == NOW + timedelta(minutes=1)
    assert notify.send_due() == {}  # not due again before its time

    time_machine.shift(timedelta(minutes=1))
    assert notify.send_due() == {"failed": 1}
    fired.refresh_from_db()
    assert (fired.attempts, fired.next_attempt_at) == (2, NOW + timedelta(minutes=1) + timedelta(minutes=2))
    assert list(AlarmEvent.objects.failing()) == [fired]

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    time_machine.shift(timedelta(minutes=2))
    assert notify.send_due() == {"sent": 1}
    time_machine.shift(timedelta(hours=1))
    assert notify.send_due() == {}
    assert len(mail.outbox) == 1
    fired.refresh_from_db()
    assert fired.notified_at is not None and fired.last_error == "" and fired.attempts == 3


def test_backoff_doubles_up_to_six_hours_and_never_gives_up():
    assert [notify.backoff(n) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 4, 8)]
    assert notify.backoff(9) == timedelta(minutes=256)
    assert notify.backoff(10) == notify.backoff(500) == timedelta(hours=6)


def test_one_failing_event_does_not_hold_back_the_others(home, fired, settings, monkeypatch):
    home.rule(Kind.HOURLY_COST, "1")
    home.set_hour(NOW, eur="2")
    evaluate_households([home.household.pk])
    real = notify._message

    def broken_for_the_first(event):
        if event.pk == fired.pk:
            raise ValueError("template exploded")
        return real(event)

    monkeypatch.setattr(notify, "_message", broken_for_the_first)
    assert notify.send_due() == {"failed": 1, "sent": 1}
    assert len(mail.outbox) == 1


def test_a_batch_stops_at_its_limit_and_the_rest_wait_for_the_next_run(home):
    for threshold in ("1", "2", "3"):
        home.rule(Kind.DAILY_COST, threshold)
    home.set_hour(datetime(2026, 11, 18, 1, tzinfo=UTC), eur="9")
    evaluate_households([home.household.pk])
    assert notify.send_due(limit=2) == {"sent": 2}
    assert notify.send_due(limit=2) == {"sent": 1}
    assert len(mail.outbox) == 3
