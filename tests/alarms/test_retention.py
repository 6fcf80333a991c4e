"""prune_alarm_events: old history goes once mailed; unsent mail and the alarms still firing stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from alarms.management.commands.prune_alarm_events import Command as PruneAlarmEvents
from alarms.models import AlarmEvent, AlarmRule
from alarms.retention import prune_events
from alarms.tasks import prune_alarm_events

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=400)
DAYS = 365

pytestmark = pytest.mark.time_machine(NOW, tick=False)


def flip(rule: AlarmRule, holds: bool, at: datetime, *, mailed: bool = True) -> AlarmEvent:
    event = rule.record(holds, Decimal("1"), at)
    assert event is not None
    if mailed:
        AlarmEvent.objects.filter(pk=event.pk).update(notified_at=at + timedelta(minutes=1), next_attempt_at=None)
    return event


def test_mailed_events_older_than_the_retention_are_deleted(home):
    rule = home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    old = [flip(rule, True, LONG_AGO), flip(rule, False, LONG_AGO + timedelta(hours=1))]
    recent = [flip(rule, True, NOW - timedelta(days=10)), flip(rule, False, NOW - timedelta(days=9))]

    assert prune_events(NOW, DAYS, batch_size=1000) == len(old)

    assert set(AlarmEvent.objects.all()) == set(recent)


def test_mail_not_yet_sent_is_never_deleted_however_old(home):
    rule = home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    flip(rule, True, LONG_AGO)
    waiting = flip(rule, False, LONG_AGO + timedelta(hours=1), mailed=False)
    AlarmEvent.objects.filter(pk=waiting.pk).update(attempts=40, last_error="SMTPServerDisconnected")

    assert prune_events(NOW, DAYS, batch_size=1000) == 1

    waiting.refresh_from_db()
    assert (waiting.notified_at, waiting.attempts) == (None, 40)
    assert AlarmEvent.objects.due(NOW).get() == waiting


def test_the_event_of_an_alarm_still_firing_stays_and_goes_once_it_cleared(home):
    rule = home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    flip(rule, True, LONG_AGO - timedelta(days=2))
    flip(rule, False, LONG_AGO - timedelta(days=1))
    still_open = flip(rule, True, LONG_AGO)

    assert prune_events(NOW, DAYS, batch_size=1000) == 2
    assert list(AlarmEvent.objects.all()) == [still_open]
    rule.refresh_from_db()
    assert rule.firing

    cleared = flip(rule, False, NOW - timedelta(minutes=5))
    assert prune_events(NOW, DAYS, batch_size=1000) == 1
    assert list(AlarmEvent.objects.all()) == [cleared]


def test_a_muted_rules_events_never_due_are_history_like_mailed_ones(home):
    rule = home.rule(AlarmRule.Kind.HOURLY_COST, "1", muted_until=NOW + timedelta(days=1000))
    fired = flip(rule, True, LONG_AGO, mailed=False)
    cleared = flip(rule, False, LONG_AGO + timedelta(hours=1), mailed=False)
    assert fired.skip_reason and cleared.skip_reason

    assert prune_events(NOW, DAYS, batch_size=1000) == 2
    assert not AlarmEvent.objects.exists()


def test_events_of_a_deleted_rule_go_with_the_rest_of_old_history(home):
    rule = home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    flip(rule, True, LONG_AGO)
    rule.delete()  # the event stays as history, without its rule

    assert AlarmEvent.objects.get().rule is None
    assert prune_events(NOW, DAYS, batch_size=1000) == 1
    assert not AlarmEvent.objects.exists()


def test_another_households_open_alarm_is_not_touched(home, other_home):
    mine = home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    theirs = other_home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    flip(mine, True, LONG_AGO)
    flip(mine, False, LONG_AGO + timedelta(hours=1))
    open_theirs = flip(theirs, True, LONG_AGO)

    assert prune_events(NOW, DAYS, batch_size=1) == 2
    assert list(AlarmEvent.objects.all()) == [open_theirs]


def test_the_command_and_the_beat_task_prune_with_the_settings(home, settings):
    settings.RETENTION_ALARM_EVENTS_DAYS = 30
    rule = home.rule(AlarmRule.Kind.HOURLY_COST, "1")
    flip(rule, True, NOW - timedelta(days=40))
    flip(rule, False, NOW - timedelta(days=39))
    flip(rule, True, NOW - timedelta(days=38))
    flip(rule, False, NOW - timedelta(days=37))
    out = StringIO()

    call_command("prune_alarm_events", "--batch-size", "1", stdout=out)
    assert out.getvalue().strip() == "Deleted 4 alarm events older than 30 days."

    flip(rule, True, NOW - timedelta(days=35))
    flip(rule, False, NOW - timedelta(days=34))
    assert prune_alarm_events() == 2
    assert "keeps every mail not yet sent and the event of every alarm still firing" in PruneAlarmEvents.help
