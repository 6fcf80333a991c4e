"""The standing charge accrues every hour of a contract, meter or no meter, exactly once."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum

from lib.periods import local_date
from meters.contracts import advance_tariffs, assign_tariff, first_hour_of, start_contract
from meters.models import HourlyUsage, Household
from meters.standing import accrue_standing_charges
from meters.tasks import accrue_standing
from tests.meters.taxkit import IEE_AND_VAT, flat, hourly_readings, mark, spanish_taxes
from tests.threads import at_once

MADRID = "Europe/Madrid"
WEEK_START = first_hour_of(date(2026, 11, 8), MADRID)  # Sunday 8 November, 00:00 in Madrid: 7 Nov 23:00 UTC
WEEK_END = first_hour_of(date(2026, 11, 15), MADRID)
DAILY = Decimal("0.48")


def standing(household) -> list[HourlyUsage]:
    return list(HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.STANDING).order_by("hour_start"))


def total(lines) -> Decimal:
    return sum((line.cost_eur for line in lines), Decimal(0))


@pytest.fixture
def silent(make_household):
    """A Madrid household under contract from the week's start (0.48 EUR a day), with no meter at all."""
    household = make_household(tariff=flat("Flat 0.48 a day", "0.20", standing=str(DAILY)))
    mark(WEEK_START)
    start_contract(household.pk, WEEK_START)
    return household


def test_a_silent_week_still_accrues_seven_days_of_standing_charge(silent):
    spanish_taxes()

    written = accrue_standing_charges(WEEK_END + timedelta(minutes=2))

    lines = standing(silent)
    assert written == len(lines) == 7 * 24
    assert [line.hour_start for line in lines] == [WEEK_START + timedelta(hours=h) for h in range(7 * 24)]
    assert total(lines) == 7 * DAILY == Decimal("3.36")
    # Taxed like any standing line: 0.02 an hour, 0.005437 of electricity tax and VAT.
    assert {(line.cost_eur, line.tax_rate, line.tax_eur) for line in lines} == {
        (Decimal("0.020000"), IEE_AND_VAT, Decimal("0.005437"))
    }


def test_running_the_job_twice_accrues_each_hour_once(silent):
    first = accrue_standing_charges(WEEK_END)
    again = accrue_standing_charges(WEEK_END + timedelta(minutes=30))

    assert (first, again) == (7 * 24, 0)
    assert total(standing(silent)) == Decimal("3.36")


def test_the_job_goes_hour_by_hour_and_stops_at_the_last_hour_that_ended(silent):
    accrue_standing_charges(WEEK_START + timedelta(hours=5, minutes=59))
    assert len(standing(silent)) == 5
    accrue_standing_charges(WEEK_START + timedelta(hours=6, minutes=3))
    assert len(standing(silent)) == 6


def test_a_week_with_the_25_hour_day_accrues_seven_daily_charges(make_household):
    household = make_household(tariff=flat("Flat 0.48 a day", "0.20", standing=str(DAILY)))
    start, end = first_hour_of(date(2026, 10, 22), MADRID), first_hour_of(date(2026, 10, 29), MADRID)
    mark(start)
    start_contract(household.pk, start)

    accrue_standing_charges(end)

    lines = standing(household)
    assert len(lines) == 7 * 24 + 1  # 25 October has 25 hours
    days = {local_date(line.hour_start, MADRID) for line in lines}
    for day in days:
        assert total(line for line in lines if local_date(line.hour_start, MADRID) == day) == DAILY
    assert total(lines) == Decimal("3.36")


def test_hours_before_the_contract_and_households_without_one_accrue_nothing(make_household, silent):
    without = make_household(tariff=silent.tariff)
    mark(WEEK_START - timedelta(days=1))

    accrue_standing_charges(WEEK_START + timedelta(hours=2))

    assert [line.hour_start for line in standing(silent)] == [WEEK_START, WEEK_START + timedelta(hours=1)]
    assert standing(without) == []


def test_a_contract_starting_in_the_past_accrues_its_hours_up_to_the_job_at_once(make_household):
    household = make_household(tariff=flat("Flat 0.48 a day", "0.20", standing=str(DAILY)))
    mark(WEEK_END)

    start_contract(household.pk, WEEK_START)

    assert total(standing(household)) == Decimal("3.36")
    assert accrue_standing_charges(WEEK_END + timedelta(minutes=3)) == 0


def test_a_run_catching_up_across_a_tariff_change_prices_each_hour_by_the_tariff_assigned_then(silent):
    """The job was down over midnight, when the household moved to a dearer standing charge."""
    dearer = flat("Flat 0.72 a day", "0.20", standing="0.72")
    switch = first_hour_of(date(2026, 11, 10), MADRID)
    assign_tariff(silent.pk, dearer, switch, now=switch - timedelta(days=1))
    mark(switch - timedelta(hours=2))
    run_at = switch + timedelta(hours=2, minutes=2)
    advance_tariffs(run_at)  # as the task does first: the household's current tariff is now the dearer one

    accrue_standing_charges(run_at)

    lines = [line for line in standing(silent) if line.hour_start >= switch - timedelta(hours=2)]
    assert [(line.hour_start - switch, line.cost_eur) for line in lines] == [
        (timedelta(hours=-2), Decimal("0.020000")),
        (timedelta(hours=-1), Decimal("0.020000")),
        (timedelta(0), Decimal("0.030000")),
        (timedelta(hours=1), Decimal("0.030000")),
    ]


def test_only_households_that_got_a_line_see_their_usage_version_raised(silent, make_meter, make_household):
    active = make_household(tariff=silent.tariff)
    start_contract(active.pk, WEEK_START)
    meter, _ = make_meter(active)
    hourly_readings(meter, WEEK_START, 3)  # ingest wrote its three standing hours
    versions = dict(Household.objects.values_list("pk", "usage_version"))

    accrue_standing_charges(WEEK_START + timedelta(hours=3))

    after = dict(Household.objects.values_list("pk", "usage_version"))
    assert after[active.pk] == versions[active.pk]
    assert after[silent.pk] > versions[silent.pk]
    assert len(standing(active)) == len(standing(silent)) == 3


def test_the_beat_task_moves_tariffs_on_then_accrues(silent, time_machine):
    time_machine.move_to(WEEK_START + timedelta(hours=1, minutes=2), tick=False)
    assert accrue_standing() == 1
    entry = settings.CELERY_BEAT_SCHEDULE["accrue-standing-charges"]
    assert entry["task"] == "meters.tasks.accrue_standing"
    minute = next(iter(entry["schedule"].minute))
    assert minute < next(iter(settings.CELERY_BEAT_SCHEDULE["settle-closed-hour"]["schedule"].minute))


# --- Exactly once under concurrency (PostgreSQL: SQLite serializes every writer) --------------------

concurrent = pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks and the unique index at work")


@concurrent
@pytest.mark.django_db(transaction=True)
def test_two_jobs_at_once_accrue_the_week_once(make_household):
    household = make_household(tariff=flat("Flat 0.48 a day", "0.20", standing=str(DAILY)))
    mark(WEEK_START)
    start_contract(household.pk, WEEK_START)

    written, errors = at_once(*[lambda: accrue_standing_charges(WEEK_END)] * 3)

    assert errors == []
    assert sum(written) == 7 * 24
    assert total(standing(household)) == Decimal("3.36")


@concurrent
@pytest.mark.django_db(transaction=True)
def test_the_job_and_a_meter_back_from_silence_at_once_accrue_each_hour_once(make_household, make_meter):
    household = make_household(tariff=flat("Flat 0.48 a day", "0.20", standing=str(DAILY)))
    mark(WEEK_START)
    start_contract(household.pk, WEEK_START)
    meter, _ = make_meter(household)

    _, errors = at_once(
        lambda: accrue_standing_charges(WEEK_END),
        lambda: hourly_readings(meter, WEEK_START, 7 * 24),  # the meter sends its whole week
    )

    assert errors == []
    lines = standing(household)
    assert len(lines) == len({line.hour_start for line in lines}) == 7 * 24
    assert total(lines) == Decimal("3.36")
    energy = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.ENERGY)
    assert energy.aggregate(kwh=Sum("kwh"))["kwh"] == 7 * 24
