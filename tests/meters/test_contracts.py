"""Effective-dated tariffs: a household changes tariff from a day, hours before it keep the old one,
and no change ever re-prices an hour that may be priced or paid."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone

from meters.contracts import ContractError, advance_tariffs, assign_tariff, first_hour_of, start_contract
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Household, TariffAssignment
from meters.schema import ReadingIn
from tests.meters.taxkit import flat, mark

MADRID = "Europe/Madrid"
NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)  # 10:30 in Madrid


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def send(meter, *readings: tuple[datetime, str]) -> None:
    items = [(i, ReadingIn(timestamp=at, energy_kwh=kwh)) for i, (at, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


@pytest.fixture
def tariffs():
    return flat("Old 0.10", "0.10"), flat("New 0.30", "0.30")


@pytest.fixture
def home(make_household, make_meter, tariffs):
    """A Madrid household under contract on the old tariff since 1 November, with a meter."""
    household = make_household(tariff=tariffs[0])
    mark(NOW)
    start_contract(household.pk, first_hour_of(date(2026, 11, 1), MADRID))
    meter, _ = make_meter(household)
    return household, meter


def cost(meter, hour: datetime) -> Decimal:
    return sum(line.cost_eur for line in HourlyUsage.objects.filter(meter=meter, hour_start=hour))


@time_machine.travel(NOW, tick=False)
def test_hours_before_a_change_keep_the_old_tariff_even_when_their_readings_come_late(home, tariffs):
    household, meter = home
    switch = first_hour_of(date(2026, 11, 21), MADRID)  # 20 Nov 23:00 UTC
    assign_tariff(household.pk, tariffs[1], switch, now=timezone.now())

    with time_machine.travel(utc(2026, 11, 21, 2), tick=False):
        send(meter, (utc(2026, 11, 20, 23), "102"), (utc(2026, 11, 21, 0), "103"), (utc(2026, 11, 21, 1), "104"))
        # Late, after the switch: the two hours before it, 1.5 and 0.5 kWh, at the old tariff.
        send(meter, (utc(2026, 11, 20, 21), "100"), (utc(2026, 11, 20, 22), "101.5"))

    assert [cost(meter, utc(2026, 11, 20, 21) + timedelta(hours=h)) for h in range(4)] == [
        Decimal("0.15"),
        Decimal("0.05"),
        Decimal("0.30"),
        Decimal("0.30"),
    ]
    household.refresh_from_db()
    assert (household.tariff, household.tariff_until) == (tariffs[0], switch)  # the job has not run yet


@time_machine.travel(NOW, tick=False)
def test_a_change_cannot_start_at_an_hour_that_may_already_be_priced(home, tariffs):
    household, _ = home
    for start in (utc(2026, 11, 20, 9), utc(2026, 11, 20, 0), utc(2026, 11, 1)):
        with pytest.raises(ContractError, match="cannot start before 2026-11-20 10:00 UTC"):
            assign_tariff(household.pk, tariffs[1], start, now=timezone.now())
    with pytest.raises(ContractError, match="on the hour"):
        assign_tariff(household.pk, tariffs[1], utc(2026, 11, 25, 10, 30), now=timezone.now())

    household.refresh_from_db()
    assert household.tariff_assignments.count() == 1
    assert (household.tariff, household.tariff_until) == (tariffs[0], None)


@time_machine.travel(NOW, tick=False)
def test_assigning_again_replaces_the_change_planned_from_then_on(home, tariffs):
    household, _ = home
    old, new = tariffs
    assign_tariff(household.pk, new, first_hour_of(date(2026, 12, 1), MADRID), now=timezone.now())
    assign_tariff(household.pk, old, first_hour_of(date(2026, 11, 25), MADRID), now=timezone.now())

    assert list(household.tariff_assignments.values_list("tariff", "valid_from")) == [
        (old.pk, first_hour_of(date(2026, 11, 1), MADRID)),
        (old.pk, first_hour_of(date(2026, 11, 25), MADRID)),
    ]


def test_the_hourly_job_moves_households_onto_a_change_that_began(home, tariffs):
    household, _ = home
    switch = first_hour_of(date(2026, 11, 21), MADRID)
    with time_machine.travel(NOW, tick=False):
        assign_tariff(household.pk, tariffs[1], switch, now=timezone.now())

    assert advance_tariffs(switch - timedelta(seconds=1)) == 0
    assert advance_tariffs(switch) == 1
    assert advance_tariffs(switch + timedelta(hours=1)) == 0  # idempotent
    household.refresh_from_db()
    assert (household.tariff, household.tariff_since, household.tariff_until) == (tariffs[1], switch, None)


@time_machine.travel(NOW, tick=False)
def test_a_household_form_saved_after_a_tariff_change_does_not_undo_it(home, tariffs):
    household, _ = home
    stale = Household.objects.get(pk=household.pk)
    switch = first_hour_of(date(2026, 11, 21), MADRID)
    assign_tariff(household.pk, tariffs[1], switch, now=timezone.now())

    stale.name = "Renamed in the admin"
    stale.save()

    household.refresh_from_db()
    assert (household.name, household.tariff_until) == ("Renamed in the admin", switch)


@time_machine.travel(NOW, tick=False)
def test_a_household_without_a_contract_gets_one_from_its_first_hour_when_it_changes_tariff(
    make_household, make_meter, tariffs
):
    household = make_household(tariff=tariffs[0])
    meter, _ = make_meter(household)
    send(meter, (utc(2026, 11, 15, 10), "100"), (utc(2026, 11, 15, 11), "101"))

    assign_tariff(household.pk, tariffs[1], utc(2026, 11, 21), now=timezone.now())

    assert list(household.tariff_assignments.values_list("tariff", "valid_from")) == [
        (tariffs[0].pk, utc(2026, 11, 15, 10)),
        (tariffs[1].pk, utc(2026, 11, 21)),
    ]


# --- The admin ------------------------------------------------------------------------------------


@time_machine.travel(NOW, tick=False)
def test_staff_change_a_tariff_from_a_local_day(staff_client, staff_user, home, tariffs):
    household, _ = home
    url = reverse("admin:meters_tariffassignment_add")
    form = {"household": household.pk, "tariff": tariffs[1].pk, "starts_on": "2026-11-22"}

    response = staff_client.post(url, form)

    assert response.status_code == 302
    change = household.tariff_assignments.get(tariff=tariffs[1])
    assert (change.valid_from, change.created_by) == (utc(2026, 11, 21, 23), staff_user)  # midnight in Madrid
    household.refresh_from_db()
    assert household.tariff_until == utc(2026, 11, 21, 23)
    assert (
        "a change is planned from 2026-11-21 23:00 UTC"
        in staff_client.get(reverse("admin:meters_household_change", args=[household.pk])).content.decode()
    )


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("day", "hour"), [("2026-11-20", ""), ("2026-11-20", "10"), ("2026-10-01", "")])
def test_a_tariff_change_for_a_day_that_has_begun_is_refused_and_nothing_changes(
    staff_client, home, tariffs, day, hour
):
    household, _ = home
    response = staff_client.post(
        reverse("admin:meters_tariffassignment_add"),
        {"household": household.pk, "tariff": tariffs[1].pk, "starts_on": day, "at_hour": hour},
    )

    assert response.status_code == 200
    assert "A tariff change cannot start before 2026-11-20 10:00 UTC" in response.content.decode()
    assert household.tariff_assignments.count() == 1


@time_machine.travel(NOW, tick=False)
def test_a_change_at_a_local_hour_starts_then(staff_client, home, tariffs):
    household, _ = home
    staff_client.post(
        reverse("admin:meters_tariffassignment_add"),
        {"household": household.pk, "tariff": tariffs[1].pk, "starts_on": "2026-11-20", "at_hour": "14"},
    )
    assert household.tariff_assignments.filter(valid_from=utc(2026, 11, 20, 13)).exists()


@time_machine.travel(NOW, tick=False)
def test_assignments_are_never_edited_or_deleted_in_the_admin(staff_client, home):
    household, _ = home
    first = household.tariff_assignments.get()
    change = reverse("admin:meters_tariffassignment_change", args=[first.pk])
    delete = reverse("admin:meters_tariffassignment_delete", args=[first.pk])

    assert b'name="tariff"' not in staff_client.get(change).content
    assert staff_client.post(delete, {"post": "yes"}).status_code == 403
    assert TariffAssignment.objects.filter(pk=first.pk).exists()


@time_machine.travel(NOW, tick=False)
def test_a_household_created_in_the_admin_starts_its_contract(staff_client, tariffs):
    from energypay.accounts.models import User

    user = User.objects.create_user("new@example.com", "unused-pw-123")
    mark(NOW.replace(minute=0))
    form = {
        "user": user.pk,
        "name": "New home",
        "timezone": MADRID,
        "region": "peninsula",
        "tariff": tariffs[0].pk,
        "contract_starts": "2026-11-19",
        "meters-TOTAL_FORMS": 0,
        "meters-INITIAL_FORMS": 0,
        "meters-MIN_NUM_FORMS": 0,
        "meters-MAX_NUM_FORMS": 1000,
    }

    response = staff_client.post(reverse("admin:meters_household_add"), form)

    assert response.status_code == 302
    household = Household.objects.get(user=user)
    assert list(household.tariff_assignments.values_list("tariff", "valid_from")) == [
        (tariffs[0].pk, utc(2026, 11, 18, 23))
    ]
    assert household.tariff_since == utc(2026, 11, 18, 23)
    page = staff_client.get(reverse("admin:meters_household_change", args=[household.pk])).content.decode()
    assert "2026-11-18 23:00 UTC" in page and 'name="tariff"' not in page


@time_machine.travel(NOW, tick=False)
@pytest.mark.parametrize(("field", "value"), [("region", "canarias"), ("timezone", "Atlantic/Canary")])
def test_a_billed_household_keeps_its_time_zone_and_tax_region(staff_client, home, field, value):
    household, meter = home
    send(meter, (utc(2026, 11, 19, 10), "100"), (utc(2026, 11, 19, 11), "101"))
    form = {
        "user": household.user_id,
        "name": household.name,
        "address": "",
        "timezone": MADRID,
        "region": "peninsula",
        field: value,
        "tariff_assignments-TOTAL_FORMS": 1,
        "tariff_assignments-INITIAL_FORMS": 1,
        "tariff_assignments-MIN_NUM_FORMS": 0,
        "tariff_assignments-MAX_NUM_FORMS": 0,
        "meters-TOTAL_FORMS": 1,
        "meters-INITIAL_FORMS": 1,
        "meters-MIN_NUM_FORMS": 0,
        "meters-MAX_NUM_FORMS": 1000,
        "meters-0-id": meter.pk,
        "meters-0-household": household.pk,
        "meters-0-serial": meter.serial,
        "meters-0-max_power_kw": "30",
        "meters-0-is_active": "on",
    }

    response = staff_client.post(reverse("admin:meters_household_change", args=[household.pk]), form)

    assert response.status_code == 200
    assert "The household has been billed" in response.content.decode()
    household.refresh_from_db()
    assert (household.region, household.timezone) == ("peninsula", MADRID)
