"""Staff see every rule and event, filter them, and see which notifications failed and why."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from alarms import notify
from alarms.evaluation import evaluate_households
from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
RULES = reverse("admin:alarms_alarmrule_changelist")
EVENTS = reverse("admin:alarms_alarmevent_changelist")


def listed(response) -> set[int]:
    """The primary keys of the rows on an admin changelist page."""
    return {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', response.content.decode())}


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def events(home, other_home, settings) -> tuple[AlarmEvent, AlarmEvent]:
    """Two fired events: the first household's mail failed, the other's was sent."""
    for each in (home, other_home):
        each.rule(Kind.DAILY_COST, "5")
        each.set_hour(datetime(2026, 11, 18, 1, tzinfo=UTC), eur="6")
    evaluate_households([home.household.pk])
    settings.EMAIL_BACKEND = "tests.alarms.backends.RefusingBackend"
    notify.send_due()
    evaluate_households([other_home.household.pk])
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    notify.send_due()
    return AlarmEvent.objects.get(household=home.household), AlarmEvent.objects.get(household=other_home.household)


def test_the_notification_failed_filter_shows_the_error(staff_client, events):
    failed, sent = events
    response = staff_client.get(EVENTS, {"notification": "failed"})
    assert "ConnectionRefusedError: [Errno 111] Connection refused" in response.content.decode()
    assert listed(response) == {failed.pk}
    assert listed(staff_client.get(EVENTS, {"notification": "sent"})) == {sent.pk}
    assert listed(staff_client.get(EVENTS)) == {failed.pk, sent.pk}


def test_staff_retry_a_failed_notification_now(staff_client, events):
    failed, _ = events
    assert failed.next_attempt_at == NOW + timedelta(minutes=1)
    staff_client.post(EVENTS, {"action": "retry_now", "_selected_action": [failed.pk]})
    failed.refresh_from_db()
    assert failed.next_attempt_at == NOW


def test_rules_filter_by_kind_firing_and_paused(staff_client, home, other_home):
    firing = home.rule(Kind.DAILY_COST, "5")
    AlarmRule.objects.filter(pk=firing.pk).update(firing=True)
    paused = other_home.rule(Kind.METER_SILENT, "3", paused=True)
    assert listed(staff_client.get(RULES, {"firing__exact": "1"})) == {firing.pk}
    assert listed(staff_client.get(RULES, {"paused__exact": "1", "kind": Kind.METER_SILENT})) == {paused.pk}
    assert listed(staff_client.get(RULES, {"kind": Kind.DAILY_COST})) == {firing.pk}


def test_staff_pause_rules_but_cannot_edit_their_state(staff_client, home):
    rule = home.rule(Kind.DAILY_COST, "5")
    staff_client.post(RULES, {"action": "pause", "_selected_action": [rule.pk]})
    rule.refresh_from_db()
    assert rule.paused
    change = staff_client.get(reverse("admin:alarms_alarmrule_change", args=[rule.pk]))
    assert change.status_code == 200 and b'name="firing"' not in change.content


def test_pausing_and_resuming_many_rules_is_one_update_each(staff_client, home, other_home):
    rules = [home.rule(Kind.DAILY_COST, "5"), home.rule(Kind.METER_SILENT, "3"), other_home.rule(Kind.HOURLY_COST, "1")]
    AlarmRule.objects.filter(pk=rules[0].pk).update(firing=True, last_value="6")
    selected = [rule.pk for rule in rules]
    for action in ("pause", "resume"):
        with CaptureQueriesContext(connection) as queries:
            staff_client.post(RULES, {"action": action, "_selected_action": selected})
        updates = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
        assert len(updates) == 1, updates
    for rule in rules:
        rule.refresh_from_db()
        assert not rule.paused and not rule.firing and rule.last_value is None


def test_households_cannot_open_the_admin(household_client):
    assert household_client.get(EVENTS).status_code == 302
