"""Kinds that time moves: local days across daylight saving, silent meters, debts that age, the periodic job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from alarms import tasks
from alarms.evaluation import evaluate_households, households_for_periodic
from alarms.figures import day_costs
from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind
from meters.models import HourlyUsage, Meter


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen():
    # Fixtures (the price quote, meters last heard from "now") are made before every time tested here.
    with time_machine.travel(utc(2026, 3, 1), tick=False):
        yield


def kinds_of_events(rule: AlarmRule) -> list[str]:
    return list(AlarmEvent.objects.filter(rule=rule).order_by("at", "pk").values_list("kind", flat=True))


@pytest.fixture
def run_periodic(monkeypatch):
    """The beat job, with its fan-out run in-process instead of through the broker."""
    monkeypatch.setattr(
        tasks.evaluate_households, "delay", lambda ids, scope: tasks.evaluate_households.apply(args=(ids, scope))
    )
    return lambda: tasks.evaluate_periodic.apply().get()


# --- The household's local day, on the days the clocks change (Europe/Madrid) --------------------


def test_the_25_hour_autumn_day_counts_all_its_hours(home):
    """2026-10-25 in Madrid runs from 24 Oct 22:00 UTC to 25 Oct 23:00 UTC: 25 hours."""
    rule = home.rule(Kind.DAILY_COST, "5")
    home.line(utc(2026, 10, 24, 21), eur="9")  # 23:00 on the 24th in Madrid: the day before
    for hour in range(24):
        home.line(utc(2026, 10, 24, 22) + timedelta(hours=hour), eur="0.2")
    with time_machine.travel(utc(2026, 10, 25, 22, 30), tick=False):  # 23:30 local, still the 25th
        assert day_costs([home.household], utc(2026, 10, 25, 22, 30)) == {home.household.pk: Decimal("4.8")}
        evaluate_households([home.household.pk])
        assert kinds_of_events(rule) == []
        home.line(utc(2026, 10, 25, 22), eur="0.2")  # the 25th hour
        evaluate_households([home.household.pk])
        assert kinds_of_events(rule) == ["fired"]
        assert AlarmEvent.objects.get().value == Decimal("5")
    with time_machine.travel(utc(2026, 10, 25, 23, 30), tick=False):  # 00:30 on the 26th: a new day
        evaluate_households([home.household.pk])
        assert kinds_of_events(rule) == ["fired", "cleared"]


def test_the_23_hour_spring_day_ends_at_22_utc(home):
    """2026-03-29 in Madrid runs from 28 Mar 23:00 UTC to 29 Mar 22:00 UTC: 23 hours."""
    rule = home.rule(Kind.DAILY_COST, "4.6")
    for hour in range(23):
        home.line(utc(2026, 3, 28, 23) + timedelta(hours=hour), eur="0.2")
    home.line(utc(2026, 3, 29, 22), eur="9")  # 00:00 on the 30th in Madrid
    with time_machine.travel(utc(2026, 3, 29, 21, 30), tick=False):  # 23:30 local
        evaluate_households([home.household.pk])
        assert kinds_of_events(rule) == ["fired"]
        assert AlarmEvent.objects.get().value == Decimal("4.6")


# --- Silent meters: real hours, whatever the wall clock does --------------------------------------


@pytest.mark.parametrize(
    ("last_seen", "quiet_at", "silent_at"),
    [
        # Spring: last heard 01:30 CET; three real hours later the wall clock says 05:30 CEST.
        (utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 3, 29), utc(2026, 3, 29, 3, 30)),
        # Autumn: last heard 02:30 CEST; three real hours later the wall clock says 04:30 CET.
        (utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3, 29), utc(2026, 10, 25, 3, 30)),
    ],
    ids=["spring", "autumn"],
)
def test_a_meter_silent_for_n_real_hours_across_the_clock_change(home, run_periodic, last_seen, quiet_at, silent_at):
    rule = home.rule(Kind.METER_SILENT, "3")
    Meter.objects.filter(pk=home.meter.pk).update(last_seen_at=last_seen)
    with time_machine.travel(quiet_at, tick=False):
        run_periodic()
        assert kinds_of_events(rule) == []
    with time_machine.travel(silent_at, tick=False):
        run_periodic()
        assert kinds_of_events(rule) == ["fired"]
        assert AlarmEvent.objects.get().value == Decimal("3")
    with time_machine.travel(silent_at + timedelta(minutes=5), tick=False):
        Meter.objects.filter(pk=home.meter.pk).update(last_seen_at=silent_at + timedelta(minutes=4))
        run_periodic()
        assert kinds_of_events(rule) == ["fired", "cleared"]


def test_a_meter_never_heard_from_counts_from_when_it_was_added(household, quote, run_periodic):
    rule = AlarmRule.objects.create(household=household, kind=Kind.METER_SILENT, threshold=2)
    with time_machine.travel(utc(2026, 11, 18, 8), tick=False):
        Meter.objects.create(serial="NEVER-SEEN", household=household)
    with time_machine.travel(utc(2026, 11, 18, 9, 59), tick=False):
        run_periodic()
        assert kinds_of_events(rule) == []
    with time_machine.travel(utc(2026, 11, 18, 10), tick=False):
        run_periodic()
        assert kinds_of_events(rule) == ["fired"]


# --- Payments that fail or fall behind ------------------------------------------------------------


def test_arrears_fire_once_an_hour_should_have_been_paid_by_a_run(home, run_periodic):
    rule = home.rule(Kind.SETTLEMENT_FAILED)
    home.line(utc(2026, 11, 18, 12), eur="0.40", kwh="1.6", settled=False)
    # The 13:05 run pays 12:00-13:00; by 14:05 the next run has been and it is still open.
    with time_machine.travel(utc(2026, 11, 18, 14, 4), tick=False):
        run_periodic()
        assert kinds_of_events(rule) == []
    with time_machine.travel(utc(2026, 11, 18, 14, 5), tick=False):
        run_periodic()
        event = AlarmEvent.objects.get()
        assert (event.kind, event.value) == ("fired", Decimal("0.4"))
        assert event.detail == "€0.40 unpaid for hours before 13:00 UTC"
    HourlyUsage.objects.filter(household=home.household).update(settled_at=utc(2026, 11, 18, 14, 6))
    with time_machine.travel(utc(2026, 11, 18, 14, 10), tick=False):
        run_periodic()
        assert kinds_of_events(rule) == ["fired", "cleared"]


def test_a_refused_payment_fires_for_24_hours(home, run_periodic):
    rule = home.rule(Kind.SETTLEMENT_FAILED)
    home.failed_settlement(utc(2026, 11, 18, 9, 6))
    with time_machine.travel(utc(2026, 11, 19, 9, 5), tick=False):
        run_periodic()
        assert AlarmEvent.objects.get().detail == "1 payment refused by the network in the last 24 hours"
    with time_machine.travel(utc(2026, 11, 19, 9, 7), tick=False):
        run_periodic()
        assert kinds_of_events(rule) == ["fired", "cleared"]


def test_the_runway_shortens_as_time_passes_with_no_new_money(home, run_periodic):
    """EUR 2 a day for the last week and EUR 20 in the wallet: 10 days; a price drop halves it."""
    from payments.models import PriceQuote

    rule = home.rule(Kind.BALANCE_DAYS, "7")
    now = utc(2026, 11, 18, 10)
    for day in range(7):
        home.line(now - timedelta(days=7 - day), eur="2")
    home.set_balance("20")
    with time_machine.travel(now, tick=False):
        run_periodic()
        rule.refresh_from_db()
        assert (rule.firing, rule.last_value) == (False, Decimal("10"))
        PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("50"), fetched_at=now)
        run_periodic()
        rule.refresh_from_db()
        assert (rule.firing, rule.last_value) == (True, Decimal("5"))


# --- What the periodic job looks at ---------------------------------------------------------------


def test_the_periodic_job_takes_time_based_and_firing_rules_only(make_household, quote, run_periodic):
    from tests.alarms.conftest import make_home_for

    silent, usage_only, firing_usage, paused = (make_home_for(make_household()) for _ in range(4))
    silent.rule(Kind.METER_SILENT, "3")
    usage_only.rule(Kind.DAILY_COST, "5")
    firing = firing_usage.rule(Kind.HOURLY_COST, "1")
    AlarmRule.objects.filter(pk=firing.pk).update(firing=True)
    paused.rule(Kind.METER_SILENT, "3", paused=True)
    assert households_for_periodic() == sorted([silent.household.pk, firing_usage.household.pk])
    with time_machine.travel(utc(2026, 11, 18, 10), tick=False):
        assert run_periodic() == 2
    # The firing hourly rule had no data any more: the periodic run cleared it.
    assert kinds_of_events(firing) == ["cleared"]
