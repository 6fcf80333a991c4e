"""Every event type comes from the real code path that makes it happen, in the same transaction as the change:
stored when the change commits, absent when it rolls back, once per transition."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction
from django.utils import timezone

from alarms.models import AlarmEvent, AlarmRule
from energypay.webhooks import detectors, events, outbox
from energypay.webhooks.models import ArrearsState, WebhookDelivery, WebhookEvent
from lib.periods import HOUR, floor_hour
from meters.hooks import emit
from meters.models import HourlyUsage, Meter
from payments import runs
from payments.broadcast import refresh_pending
from payments.models import PaymentState, Settlement
from payments.networks import Outcome, Reply
from payments.networks.local import LocalLedger
from tests.energypay.webhooks.conftest import make_endpoint
from tests.payments import crashkit

pytestmark = pytest.mark.django_db


@pytest.fixture
def subscribed(db):
    """An endpoint subscribed to every event (nothing is sent in these tests: they read the outbox)."""
    return make_endpoint("https://crm.example/hooks")[0]


def stored(event_type: str) -> list[dict]:
    rows = WebhookEvent.objects.filter(type=event_type).order_by("pk")
    return [json.loads(row.body) | {"household": row.household_id} for row in rows]


def seen_settlements(count: int) -> list[Settlement]:
    town = crashkit.build_town(count)
    hour = floor_hour(timezone.now()) - 2 * HOUR
    crashkit.add_hour(town, hour)
    crashkit.fresh_quote()
    runs.settle_households(town.household_ids, hour + HOUR)
    return list(Settlement.objects.filter(state=PaymentState.SEEN).order_by("pk"))


class InABlock:
    name = "local"

    def status(self, txid: str) -> Reply:
        return Reply(Outcome.CONFIRMED, "in block 7", 1)


def test_settlements_confirmed_in_a_block_each_become_one_event_with_a_delivery_per_endpoint(subscribed):
    second = make_endpoint("https://desk.example/hooks", types=[events.SETTLEMENT_CONFIRMED])[0]
    make_endpoint("https://other.example/hooks", types=[events.METER_SILENT])
    settlements = seen_settlements(3)
    assert not WebhookEvent.objects.exists()  # seen is not confirmed

    assert refresh_pending(Settlement, InABlock()) == 3
    assert refresh_pending(Settlement, InABlock()) == 0  # asked again: nothing new, no new event

    confirmed = stored(events.SETTLEMENT_CONFIRMED)
    assert [event["data"]["settlement_id"] for event in confirmed] == [s.pk for s in settlements]
    first = settlements[0]
    assert confirmed[0]["household"] == first.household_id
    assert confirmed[0]["data"] == {
        "settlement_id": first.pk,
        "household_id": first.household_id,
        "state": "confirmed",
        "txid": first.txid,
        "eur": str(first.eur),
        "kwh": str(first.kwh),
        "satoshis": first.satoshis,
        "period_start": first.period_start.isoformat().replace("+00:00", "Z"),
        "period_end": first.period_end.isoformat().replace("+00:00", "Z"),
    }
    assert WebhookDelivery.objects.filter(endpoint=subscribed).count() == 3
    assert WebhookDelivery.objects.filter(endpoint=second).count() == 3
    assert WebhookDelivery.objects.count() == 6


def test_a_confirmation_that_rolls_back_leaves_no_event(subscribed):
    [settlement] = seen_settlements(1)

    with pytest.raises(RuntimeError), transaction.atomic():
        Settlement.accept_locked([settlement.pk], PaymentState.CONFIRMED, "in block 7")
        assert WebhookEvent.objects.count() == 1  # written in the transaction...
        raise RuntimeError("the block's transaction failed after all")

    assert not WebhookEvent.objects.exists() and not WebhookDelivery.objects.exists()  # ...and gone with it
    settlement.refresh_from_db()
    assert settlement.state == PaymentState.SEEN


def test_a_refused_settlement_is_one_settlement_failed_event_with_the_networks_reason(subscribed):
    [settlement] = seen_settlements(1)

    settlement.fail(PaymentState.DOUBLE_SPEND, "txn-mempool-conflict", LocalLedger())
    settlement.fail(PaymentState.REJECTED, "again", LocalLedger())  # moved on already: a no-op, no second event

    [failed] = stored(events.SETTLEMENT_FAILED)
    assert failed["data"]["state"] == "double_spend" and failed["data"]["detail"] == "txn-mempool-conflict"
    assert failed["data"]["settlement_id"] == settlement.pk
    assert not stored(events.SETTLEMENT_CONFIRMED)


def test_nothing_is_stored_when_nobody_subscribes():
    seen_settlements(2)

    refresh_pending(Settlement, InABlock())

    assert not WebhookEvent.objects.exists()


def test_an_unknown_event_type_is_refused_in_the_callers_transaction(subscribed):
    with pytest.raises(ValueError, match="unknown webhook event type"):
        emit("settlement.confirmd", 1, {})


def test_an_alarm_firing_and_clearing_are_alarm_events_with_codes_not_sentences(subscribed, make_household):
    household = make_household()
    rule = AlarmRule.objects.create(household=household, kind="daily_cost", threshold=Decimal("5"))
    now = timezone.now()

    rule.record(True, Decimal("6.25"), now, [{"code": "settlement.failed", "count": 1}])
    rule.record(True, Decimal("7"), now)  # still firing: no event
    rule.record(False, Decimal("1"), now + HOUR)

    [fired] = stored(events.ALARM_TRIGGERED)
    [cleared] = stored(events.ALARM_CLEARED)
    event = AlarmEvent.objects.filter(kind="fired").get()
    assert fired["household"] == household.pk
    assert fired["data"] == {
        "alarm_event_id": event.pk,
        "household_id": household.pk,
        "rule_id": rule.pk,
        "code": "alarm.daily_cost.fired",
        "rule_kind": "daily_cost",
        "threshold": "5.000",
        "value": "6.250000",
        "facts": [{"code": "settlement.failed", "count": 1}],
        "at": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    assert cleared["data"]["code"] == "alarm.daily_cost.cleared"


def test_an_alarm_flip_that_rolls_back_leaves_neither_its_event_nor_its_webhook(subscribed, make_household):
    rule = AlarmRule.objects.create(household=make_household(), kind="daily_cost", threshold=Decimal("5"))

    with pytest.raises(RuntimeError), transaction.atomic():
        rule.record(True, Decimal("6"), timezone.now())
        raise RuntimeError("the evaluation failed after the flip")

    assert not AlarmEvent.objects.exists() and not WebhookEvent.objects.exists()


def test_arrears_start_and_clear_once_each_whatever_the_number_of_runs(subscribed, make_household, make_meter):
    meter, _ = make_meter()
    household = meter.household
    now = floor_hour(timezone.now()) + timedelta(minutes=30)
    old_hour = floor_hour(now) - 5 * HOUR
    line = HourlyUsage.objects.create(
        household=household, meter=meter, hour_start=old_hour, kwh=1, rate=Decimal("0.25"), cost_eur=Decimal("0.25")
    )

    assert detectors.detect_arrears(now) == 1
    assert detectors.detect_arrears(now + timedelta(minutes=5)) == 0  # still in arrears: nothing new
    line.settled_at = now
    line.save()
    assert detectors.detect_arrears(now + timedelta(minutes=10)) == 1
    assert detectors.detect_arrears(now + timedelta(minutes=15)) == 0

    [started] = stored(events.ARREARS_STARTED)
    [cleared] = stored(events.ARREARS_CLEARED)
    assert started["data"] == {
        "household_id": household.pk,
        "arrears_eur": "0.250000",
        "unpaid_since": old_hour.isoformat().replace("+00:00", "Z"),
        "started_at": now.isoformat().replace("+00:00", "Z"),
    }
    assert cleared["data"]["household_id"] == household.pk
    assert cleared["data"]["arrears_started_at"] == started["data"]["started_at"]  # the episode it ends
    assert not ArrearsState.objects.exists()


def test_a_line_of_the_last_hour_not_yet_paid_is_not_arrears(subscribed, make_meter):
    """The money word: only hours a run at least an hour ago should have paid (payments.figures.in_arrears)."""
    meter, _ = make_meter()
    now = floor_hour(timezone.now()) + timedelta(minutes=30)
    last_closed = floor_hour(now) - HOUR  # the HH:05 run has just tried it
    HourlyUsage.objects.create(
        household=meter.household, meter=meter, hour_start=last_closed, kwh=1, cost_eur=Decimal("0.25")
    )

    assert detectors.detect_arrears(now) == 0


def test_a_silent_meter_is_announced_once_per_silence(subscribed, make_meter, settings):
    settings.WEBHOOK_METER_SILENT_HOURS = 6
    meter, _ = make_meter()
    start = timezone.now()
    Meter.objects.filter(pk=meter.pk).update(last_seen_at=start)

    assert detectors.detect_silent_meters(start + timedelta(hours=5)) == 0
    assert detectors.detect_silent_meters(start + timedelta(hours=7)) == 1
    assert detectors.detect_silent_meters(start + timedelta(hours=8)) == 0  # the same silence
    Meter.objects.filter(pk=meter.pk).update(last_seen_at=start + timedelta(hours=9))  # it spoke again...
    assert detectors.detect_silent_meters(start + timedelta(hours=10)) == 0
    assert detectors.detect_silent_meters(start + timedelta(hours=16)) == 1  # ...and fell silent again

    first, second = stored(events.METER_SILENT)
    assert first["data"] == {
        "meter_id": meter.pk,
        "serial": meter.serial,
        "household_id": meter.household_id,
        "last_seen_at": start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "silent_hours": 6,
    }
    assert second["data"]["last_seen_at"] != first["data"]["last_seen_at"]


def test_an_inactive_meter_is_never_silent(subscribed, make_meter):
    meter, _ = make_meter()
    Meter.objects.filter(pk=meter.pk).update(is_active=False)

    assert detectors.detect_silent_meters(timezone.now() + timedelta(days=3)) == 0


def test_the_outbox_nudges_a_worker_once_a_burst(subscribed, monkeypatch, settings):
    sent = []
    monkeypatch.setattr(outbox.app, "send_task", lambda name: sent.append(name))
    with time_machine.travel(timezone.now(), tick=False):
        with transaction.atomic():
            emit(events.METER_SILENT, 1, {"meter_id": 1})
            assert sent == []  # only after the commit
        outbox.nudge()
        outbox.nudge()

    assert sent == [outbox.DELIVER_TASK]


def test_an_issued_statement_is_one_statement_issued_event_in_its_own_transaction(
    subscribed, make_household, make_meter
):
    from payments.statements.issuing import issue_households
    from payments.statements.models import Statement
    from tests.payments.statements import kit

    household = make_household("casa@example.com", tariff=kit.tou_tariff())
    meter, _ = make_meter(household)
    kit.contracted_long_ago(household)
    kit.feed(meter, kit.OCTOBER_START, kit.OCTOBER_END)

    issue_households([household.pk], kit.OCTOBER, now=kit.AFTER_OCTOBER)

    statement = Statement.objects.get(household=household)
    [event] = stored(events.STATEMENT_ISSUED)
    assert event["household"] == household.pk
    data = event["data"]
    assert (data["statement_id"], data["number"], data["kind"], data["corrects"]) == (
        statement.pk,
        statement.code,
        "statement",
        None,
    )
    assert data["total_eur"] == str(statement.total_eur)
    # Issuing again issues nothing, and says nothing.
    issue_households([household.pk], kit.OCTOBER, now=kit.AFTER_OCTOBER)
    assert len(stored(events.STATEMENT_ISSUED)) == 1
