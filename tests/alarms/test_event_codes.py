"""Alarm events store codes and numbers; their sentences are rendered where they are shown (page, admin, mail)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from alarms import notify, rules
from alarms.evaluation import evaluate_households
from alarms.models import AlarmEvent
from alarms.rules import Kind
from payments.figures import arrears_cutoff

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
BEFORE, AFTER = ("alarms", "0001_initial"), ("alarms", "0002_event_codes_not_sentences")

pytestmark = pytest.mark.time_machine(NOW, tick=False)


def stored_text(event: AlarmEvent) -> list[str]:
    """Every text column of the event's row as the database holds it."""
    row = AlarmEvent.objects.filter(pk=event.pk).values().get()
    return [value for value in row.values() if isinstance(value, str)]


def test_a_failed_payment_event_stores_codes_and_numbers_and_no_sentence(home):
    home.rule(Kind.SETTLEMENT_FAILED)
    home.failed_settlement(NOW - timedelta(hours=1))
    home.line(NOW - timedelta(hours=5), eur="0.40", kwh="1.6", settled=False)

    evaluate_households([home.household.pk])

    event = AlarmEvent.objects.get()
    assert event.code == "alarm.settlement_failed.fired"
    refused, overdue = event.facts
    assert refused == {"code": "settlement.failed", "count": 1}
    assert overdue["code"] == "settlement.overdue"
    assert Decimal(overdue["eur"]) == Decimal("0.40")
    assert datetime.fromisoformat(overdue["before"]) == arrears_cutoff(NOW)
    assert not any("refused" in text or "Tell me" in text for text in stored_text(event))
    assert event.detail == (
        "1 payment refused by the network in the last 24 hours; "
        f"€0.40 unpaid for hours before {arrears_cutoff(NOW):%H}:00 UTC"
    )


def test_the_unpaid_hours_are_told_in_the_households_time_on_its_page_and_in_its_mail(home, household_client):
    home.rule(Kind.SETTLEMENT_FAILED)
    home.line(NOW - timedelta(hours=5), eur="0.40", kwh="1.6", settled=False)
    evaluate_households([home.household.pk])
    local = arrears_cutoff(NOW).astimezone(ZoneInfo(home.household.timezone))
    assert local.utcoffset() != timedelta(0)  # Europe/Madrid: the two clocks differ

    page = household_client.get(reverse("alarm-list")).content.decode()
    notify.send_due()

    for shown in (page, mail.outbox[0].body):
        assert f"€0.40 unpaid for hours before {local:%H:%M}" in shown
        assert "UTC" not in shown  # the page and the mail name the household's zone once, and only that one


def test_a_reworded_sentence_reaches_events_stored_before_on_the_page_in_the_admin_and_in_the_mail(
    home, household_client, staff_client, monkeypatch
):
    home.rule(Kind.DAILY_COST, "5")
    home.set_hour(NOW - timedelta(hours=2), eur="6")
    evaluate_households([home.household.pk])
    spec = rules.SPECS[Kind.DAILY_COST]
    monkeypatch.setitem(
        rules.SPECS, Kind.DAILY_COST, dataclasses.replace(spec, sentence="Warn me at %(threshold)s a day")
    )

    page = household_client.get(reverse("alarm-list")).content.decode()
    admin = staff_client.get(reverse("admin:alarms_alarmevent_changelist")).content.decode()
    notify.send_due()

    for shown in (page, admin, mail.outbox[0].subject, mail.outbox[0].body):
        assert "Warn me at €5.00 a day" in shown
        assert "a day costs" not in shown
    assert "alarm.daily_cost.fired" in admin


@pytest.mark.django_db(transaction=True)
def test_events_stored_as_sentences_keep_their_text_through_the_migration_both_ways(household):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    OldEvent = executor.loader.project_state([BEFORE]).apps.get_model("alarms", "AlarmEvent")
    OldEvent.objects.create(
        household_id=household.pk,
        rule_kind=Kind.SETTLEMENT_FAILED,
        description="Tell me when a payment fails or I fall behind on payments",
        kind="fired",
        value=Decimal("0.25"),
        detail="1 payment refused by the network in the last 24 hours",
        at=timezone.now(),
    )

    executor = MigrationExecutor(connection)
    executor.migrate([AFTER])
    event = AlarmEvent.objects.get()
    AlarmEvent.objects.create(
        household=household,
        rule_kind=Kind.BALANCE_DAYS,
        kind="cleared",
        value=Decimal("9"),
        threshold=Decimal("3"),
        facts=[rules.refused_fact(2)],
        at=timezone.now(),
    )

    assert (event.description, event.detail, event.facts) == (
        "Tell me when a payment fails or I fall behind on payments",
        "1 payment refused by the network in the last 24 hours",
        [],
    )

    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    OldEvent = executor.loader.project_state([BEFORE]).apps.get_model("alarms", "AlarmEvent")
    rows = list(OldEvent.objects.order_by("pk").values_list("description", "detail"))
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert rows == [
        (
            "Tell me when a payment fails or I fall behind on payments",
            "1 payment refused by the network in the last 24 hours",
        ),
        ("Tell me when my balance will last 3 days or less", "2 payments refused by the network in the last 24 hours"),
    ]
