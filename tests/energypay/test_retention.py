"""prune_rejections, and the beat entries that run every retention job daily."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from celery.schedules import crontab
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command, get_commands, load_command_class

from energypay.ops.models import RejectionCount
from energypay.ops.retention import prune_rejections
from energypay.tasks import prune_rejections as prune_rejections_task

NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
HOUR = NOW.replace(minute=0)

pytestmark = pytest.mark.time_machine(NOW, tick=False)

PRUNE_COMMANDS = {
    "prune_quotes": "payments",
    "prune_ledger": "payments",
    "prune_alarm_events": "alarms",
    "prune_rejections": "energypay.ops",
    "prune_webhooks": "energypay.webhooks",
    "prune_notifications": "energypay.notifications",
}


def test_counters_of_hours_older_than_the_retention_are_deleted_and_recent_ones_kept(db):
    RejectionCount.add(HOUR - timedelta(days=31), {"future": 3, "conflict": 1})
    RejectionCount.add(HOUR - timedelta(days=30, hours=1), {"naive": 2})
    RejectionCount.add(HOUR - timedelta(days=29), {"future": 5})
    RejectionCount.add(HOUR, {"future": 1})

    assert prune_rejections(NOW, days=30, batch_size=2) == 3

    kept = sorted(RejectionCount.objects.values_list("hour_start", "reason", "count"))
    assert kept == [(HOUR - timedelta(days=29), "future", 5), (HOUR, "future", 1)]


def test_the_command_and_the_task_use_the_settings(db, settings):
    settings.RETENTION_REJECTIONS_DAYS = 7
    RejectionCount.add(HOUR - timedelta(days=8), {"future": 3})
    RejectionCount.add(HOUR - timedelta(days=6), {"future": 3})
    out = StringIO()

    call_command("prune_rejections", stdout=out)

    assert out.getvalue().strip() == "Deleted 1 rejection counters of hours older than 7 days."
    RejectionCount.add(HOUR - timedelta(days=9), {"negative": 1})
    assert prune_rejections_task() == 1
    assert RejectionCount.objects.count() == 1


@pytest.mark.parametrize(("name", "app"), PRUNE_COMMANDS.items())
def test_each_prune_command_lives_with_its_table_and_its_help_says_what_it_keeps(name, app):
    assert get_commands()[name] == app
    help_text = load_command_class(app, name).help
    assert help_text.startswith(f"{name}: deletes ") and "; keeps " in help_text
    assert "\n" not in help_text


@pytest.mark.parametrize(
    "task",
    [
        "payments.tasks.prune_quotes",
        "payments.tasks.prune_ledger",
        "alarms.tasks.prune_alarm_events",
        "energypay.tasks.prune_rejections",
        "energypay.webhooks.tasks.prune_webhooks",
        "energypay.notifications.tasks.prune_notifications",
    ],
)
def test_beat_runs_every_retention_job_once_a_day(task):
    (entry,) = [e for e in django_settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == task]
    schedule = entry["schedule"]
    assert isinstance(schedule, crontab)
    assert len(schedule.hour) == 1 and len(schedule.minute) == 1 and len(schedule.day_of_month) == 31


@pytest.mark.parametrize("command", [*PRUNE_COMMANDS])
def test_a_retention_of_zero_days_is_refused(db, command):
    with pytest.raises(CommandError, match="at least 1"):
        call_command(command, "--days", "0")
