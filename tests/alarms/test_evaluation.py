"""Every alarm kind fires at its threshold (thresholds are inclusive), not before, clears, and fires again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from alarms import evaluation, notify
from alarms.evaluation import evaluate_households
from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind
from meters.models import HourlyUsage, Meter
from tests.alarms.conftest import Home

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)  # Wednesday 11:00 in Madrid
THIS_HOUR = NOW
EARLY_TODAY = datetime(2026, 11, 18, 0, 0, tzinfo=UTC)  # 01:00 in Madrid: today, but not one of the last two hours
START_OF_MONTH = datetime(2026, 11, 2, 12, 0, tzinfo=UTC)  # this month, before the 7-day window of the recent rate
WEEK_AGO = NOW - timedelta(days=7)
OVERDUE_HOUR = datetime(2026, 11, 18, 7, 0, tzinfo=UTC)  # the 10:00 run paid up to 09:00; this hour ended at 08:00


pytestmark = pytest.mark.time_machine(NOW, tick=False)


def evaluate(home: Home, scope: str = "all"):
    return evaluate_households([home.household.pk], scope)


def _hour_cost(home: Home, value: str) -> None:
    home.set_hour(THIS_HOUR, eur=value)


def _hour_energy(home: Home, value: str) -> None:
    home.set_hour(THIS_HOUR, kwh=value)


def _day_cost(home: Home, value: str) -> None:
    home.set_hour(EARLY_TODAY, eur=value)


def _month_cost(home: Home, value: str) -> None:
    home.set_hour(START_OF_MONTH, eur=value)


def _balance(home: Home, value: str) -> None:
    home.set_balance(value)


def _runway(home: Home, value: str) -> None:
    # EUR 7 over exactly the last 7 days: EUR 1 a day, so the balance in EUR is the days it lasts.
    home.set_hour(WEEK_AGO, eur="7")
    home.set_balance(value)


def _silent(home: Home, value: str) -> None:
    Meter.objects.filter(pk=home.meter.pk).update(last_seen_at=NOW - timedelta(minutes=int(Decimal(value) * 60)))


def _arrears(home: Home, value: str) -> None:
    HourlyUsage.objects.filter(household=home.household, hour_start=OVERDUE_HOUR).delete()
    home.line(OVERDUE_HOUR, eur="0.25", kwh="1", settled=value == "paid")


@dataclass(frozen=True)
class Case:
    kind: str
    threshold: str | None
    set: Callable[[Home, str], None]
    at: str  # the measured value at the threshold: fires
    quiet: str  # just on the other side: does not fire
    value_at: str  # what the fired event records

    def __str__(self) -> str:
        return self.kind


CASES = [
    Case(Kind.HOURLY_COST, "1.50", _hour_cost, at="1.50", quiet="1.49", value_at="1.50"),
    Case(Kind.DAILY_COST, "5.00", _day_cost, at="5.00", quiet="4.99", value_at="5.00"),
    Case(Kind.HOURLY_ENERGY, "3.000", _hour_energy, at="3.000", quiet="2.999", value_at="3.000"),
    Case(Kind.MONTH_PROJECTED, "80.00", _month_cost, at="80.00", quiet="79.99", value_at="80.00"),
    Case(Kind.BALANCE_BELOW, "10.00", _balance, at="10.00", quiet="10.01", value_at="10.00"),
    # Whole days, as the dashboard shows them: 7.99 days is "7 days", 8.00 is "8 days".
    Case(Kind.BALANCE_DAYS, "7", _runway, at="7.99", quiet="8.00", value_at="7"),
    Case(Kind.METER_SILENT, "3", _silent, at="3", quiet="2.99", value_at="3.00"),
    Case(Kind.SETTLEMENT_FAILED, None, _arrears, at="owed", quiet="paid", value_at="0.25"),
]


def events(rule: AlarmRule) -> list[tuple[str, Decimal | None]]:
    return list(AlarmEvent.objects.filter(rule=rule).order_by("at", "pk").values_list("kind", "value"))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_kind_fires_at_its_threshold_not_before_clears_and_fires_again(home, case):
    rule = home.rule(case.kind, case.threshold)

    case.set(home, case.quiet)
    assert evaluate(home)["unchanged"] == 1
    rule.refresh_from_db()
    assert (rule.firing, events(rule)) == (False, [])

    case.set(home, case.at)
    assert evaluate(home)["fired"] == 1
    rule.refresh_from_db()
    assert rule.firing and rule.since == NOW
    assert events(rule) == [("fired", Decimal(case.value_at))]

    assert evaluate(home)["unchanged"] == 1  # still holds: no repeat
    assert len(events(rule)) == 1

    case.set(home, case.quiet)
    assert evaluate(home)["cleared"] == 1
    rule.refresh_from_db()
    assert not rule.firing
    assert [kind for kind, _ in events(rule)] == ["fired", "cleared"]

    case.set(home, case.at)
    assert evaluate(home)["fired"] == 1
    assert [kind for kind, _ in events(rule)] == ["fired", "cleared", "fired"]


def test_the_same_data_evaluated_twice_makes_one_event_and_one_email(home):
    rule = home.rule(Kind.DAILY_COST, "5")
    _day_cost(home, "6")
    evaluate(home)
    evaluate(home)
    evaluate(home, "usage")
    assert notify.send_due() == {"sent": 1}
    assert notify.send_due() == {}
    assert len(events(rule)) == 1
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [home.household.user.email]


def test_an_event_keeps_what_the_rule_said_after_it_is_edited_or_deleted(home):
    rule = home.rule(Kind.DAILY_COST, "5")
    _day_cost(home, "6")
    evaluate(home)
    rule.edit(Kind.DAILY_COST, Decimal("7"))
    evaluate(home)  # 6 < 7: clears against the new number
    rule.delete()
    history = list(AlarmEvent.objects.filter(household=home.household).order_by("at", "pk"))
    assert [(e.kind, e.description, e.threshold) for e in history] == [
        ("fired", "Tell me when a day costs €5.00 or more", Decimal("5")),
        ("cleared", "Tell me when a day costs €7.00 or more", Decimal("7")),
    ]
    assert all(e.rule_id is None for e in history)


def test_changing_the_kind_resets_the_state_without_an_event(home):
    rule = home.rule(Kind.DAILY_COST, "5")
    _day_cost(home, "6")
    evaluate(home)
    rule.edit(Kind.HOURLY_COST, Decimal("5"))
    rule.refresh_from_db()
    assert (rule.firing, rule.last_value) == (False, None)
    assert AlarmEvent.objects.count() == 1


def test_a_paused_rule_is_not_evaluated_and_resuming_fires_again_if_it_still_holds(home):
    rule = home.rule(Kind.DAILY_COST, "5")
    _day_cost(home, "6")
    evaluate(home)
    assert rule.pause()
    rule.refresh_from_db()
    assert (rule.paused, rule.firing) == (True, False)
    assert evaluate(home) == {}
    assert rule.resume()
    assert evaluate(home)["fired"] == 1
    assert [kind for kind, _ in events(rule)] == ["fired", "fired"]


def test_a_muted_rule_records_its_events_but_does_not_mail_them(home):
    rule = home.rule(Kind.DAILY_COST, "5", muted_until=NOW + timedelta(hours=1))
    _day_cost(home, "6")
    evaluate(home)
    event = AlarmEvent.objects.get(rule=rule)
    assert event.skip_reason == "muted until 2026-11-18 11:00 UTC"
    assert notify.send_due() == {}
    assert mail.outbox == []
    event.refresh_from_db()
    assert (event.notified_at, event.next_attempt_at, event.notification_state) == (None, None, "not sent")

    rule.mute(NOW - timedelta(seconds=1))  # the mute is over: the next transition is mailed
    _day_cost(home, "1")
    evaluate(home)
    assert notify.send_due() == {"sent": 1}
    assert "cleared" in mail.outbox[0].body


def test_without_a_price_quote_a_balance_rule_keeps_its_state(home, quote):
    rule = home.rule(Kind.BALANCE_BELOW, "10")
    home.set_balance("5")
    evaluate(home)
    quote.delete()
    home.set_balance("50")
    assert evaluate(home) == {"unknown": 1}
    rule.refresh_from_db()
    assert rule.firing


def test_a_household_without_meters_or_use_never_fires_silent_or_runway_rules(household, quote):
    silent = AlarmRule.objects.create(household=household, kind=Kind.METER_SILENT, threshold=1)
    runway = AlarmRule.objects.create(household=household, kind=Kind.BALANCE_DAYS, threshold=30)
    assert evaluate_households([household.pk]) == {"unchanged": 2}
    assert not AlarmRule.objects.filter(pk__in=[silent.pk, runway.pk], firing=True).exists()


def test_a_run_of_expensive_hours_fires_once_and_clears_after_a_cheap_hour(home):
    rule = home.rule(Kind.HOURLY_COST, "1")
    for hour in range(6, 10):
        start = datetime(2026, 11, 18, hour, tzinfo=UTC)
        home.set_hour(start, eur="2")
        with time_machine.travel(start + timedelta(minutes=50), tick=False):
            evaluate(home)
    assert [kind for kind, _ in events(rule)] == ["fired"]
    home.set_hour(THIS_HOUR, eur="0.1")
    with time_machine.travel(NOW + timedelta(minutes=50), tick=False):
        evaluate(home)  # 09:00 still cost EUR 2: one cheap hour is not yet a whole one
    with time_machine.travel(NOW + timedelta(hours=1, minutes=10), tick=False):
        evaluate(home)
    assert [kind for kind, _ in events(rule)] == ["fired", "cleared"]


def test_evaluation_of_a_chunk_queries_per_kind_not_per_household(make_household, quote, django_assert_max_num_queries):
    from tests.alarms.conftest import make_home_for

    homes = [make_home_for(make_household()) for _ in range(8)]
    for home in homes:
        home.set_balance("50")  # nothing fires: flips would add their writes
        for kind in Kind.values:
            home.rule(kind, None if kind == Kind.SETTLEMENT_FAILED else "1")
    # 1 for the rules, 9 for the figures (one or two per kind), 1 bulk update (with its transaction).
    with django_assert_max_num_queries(13):
        tally = evaluate_households([home.household.pk for home in homes])
    assert tally == {"unchanged": 8 * len(Kind.values)}


def test_a_rule_paused_while_it_is_evaluated_keeps_the_state_pausing_reset(home, monkeypatch):
    rule = home.rule(Kind.DAILY_COST, "5")
    _day_cost(home, "1")
    measure = evaluation.MEASURES[Kind.DAILY_COST]

    def paused_meanwhile(inputs, household):
        AlarmRule.objects.get(pk=rule.pk).pause()  # staff pause it between loading and writing back
        return measure(inputs, household)

    monkeypatch.setitem(evaluation.MEASURES, Kind.DAILY_COST, paused_meanwhile)
    evaluate(home)
    rule.refresh_from_db()
    assert (rule.paused, rule.last_value, rule.last_evaluated_at) == (True, None, None)
