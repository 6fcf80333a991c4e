"""A meter token bills only recent readings: older ones are held for staff (docs/ingest.md, "Backfill window")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.test import override_settings
from django.urls import reverse

from meters.ingest import accept_held, discard_held, ingest_readings
from meters.models import HeldReading, HourlyUsage, Meter, Reading
from meters.schema import ReadingIn
from tests.meters.ingestkit import accepted

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

pytestmark = [pytest.mark.time_machine(NOW, tick=False), pytest.mark.usefixtures("ingest_path")]


@pytest.fixture
def post(client, meter_and_token):
    _, token = meter_and_token

    def send(*readings: dict, token: str = token):
        return accepted(client, token, list(readings))

    return send


def at(moment: datetime, kwh) -> dict:
    return {"timestamp": moment.isoformat(), "energy_kwh": kwh}


def billed_kwh(meter: Meter) -> Decimal:
    # Summed in Python: SQLite's SUM of decimals goes through floats.
    return sum(HourlyUsage.objects.filter(meter=meter).values_list("kwh", flat=True), Decimal(0))


def billed_eur(meter: Meter) -> Decimal:
    return sum(HourlyUsage.objects.filter(meter=meter).values_list("cost_eur", flat=True), Decimal(0))


def test_a_reading_a_year_back_with_register_zero_bills_nothing_and_is_held(post, meter_and_token):
    """Issue 11, finding 1: the old code spread 5000 kWh over a year of closed hours and billed it."""
    meter, _ = meter_and_token
    post(at(NOW - timedelta(hours=2), 5000), at(NOW - timedelta(hours=1), 5001))
    usage_before = list(HourlyUsage.objects.values_list("pk", "kwh", "cost_eur"))

    answer = post(at(NOW - timedelta(days=365), 0))

    assert answer["accepted"] == 0
    assert answer["rejected"] == [
        {
            "index": 0,
            "code": "reading.too_old",
            "error": "timestamp is more than 7 days old: kept for staff review, not billed",
        }
    ]
    assert list(HourlyUsage.objects.values_list("pk", "kwh", "cost_eur")) == usage_before
    assert billed_kwh(meter) == Decimal("1")
    held = HeldReading.objects.get(meter=meter)
    assert (held.timestamp, held.energy_kwh, held.reason, held.state) == (
        NOW - timedelta(days=365),
        Decimal("0"),
        "reading.too_old",
        HeldReading.State.HELD,
    )
    meter.refresh_from_db()
    assert meter.last_reading_at == NOW - timedelta(hours=1)


def test_a_late_reading_within_the_window_is_billed_as_today(post, meter_and_token):
    meter, _ = meter_and_token
    six_days = NOW - timedelta(days=6)
    post(at(six_days, 100), at(six_days + timedelta(hours=2), 102))
    HourlyUsage.objects.filter(meter=meter).update(settled_at=NOW)  # those hours were paid

    answer = post(at(six_days + timedelta(hours=1), "101.5"))  # more of the energy fell in the first hour

    assert answer == {"accepted": 1, "duplicates": 0, "rejected": []}
    adjustments = HourlyUsage.objects.filter(meter=meter, settled_at__isnull=True)
    assert sorted((line.hour_start, line.kwh) for line in adjustments) == [
        (six_days, Decimal("0.5")),
        (six_days + timedelta(hours=1), Decimal("-0.5")),
    ]
    assert billed_kwh(meter) == Decimal("2")  # the true-up moves energy, never adds any
    assert not HeldReading.objects.exists()


def test_the_window_edge_is_exact(post, meter_and_token):
    edge = NOW - timedelta(days=7)
    answer = post(at(edge, 1), at(edge - timedelta(microseconds=1), 1))
    assert answer["accepted"] == 1
    assert [item["code"] for item in answer["rejected"]] == ["reading.too_old"]


@override_settings(INGEST_BACKFILL_DAYS=30)
def test_the_window_comes_from_the_setting(post):
    answer = post(at(NOW - timedelta(days=29), 1))
    assert answer["accepted"] == 1


def test_a_reading_before_installation_is_held_and_far_before_it_is_refused(post, meter_and_token):
    meter, _ = meter_and_token
    Meter.objects.filter(pk=meter.pk).update(installed_at=NOW - timedelta(days=2))
    answer = post(
        at(NOW - timedelta(days=3), 10),  # after installation minus the window: held
        at(NOW - timedelta(days=10), 5),  # before installation minus the window: out of range
        at(NOW - timedelta(days=1), 20),
    )
    assert answer["accepted"] == 1
    assert [(item["index"], item["code"]) for item in answer["rejected"]] == [
        (0, "reading.before_installation"),
        (1, "reading.out_of_range"),
    ]
    assert "before this meter's installation (2026-11-20 12:00 UTC)" in answer["rejected"][0]["error"]
    assert list(HeldReading.objects.values_list("energy_kwh", "reason")) == [
        (Decimal("10"), "reading.before_installation")
    ]
    assert list(Reading.objects.values_list("energy_kwh", flat=True)) == [Decimal("20")]


def test_a_meter_resending_an_old_batch_gets_duplicates_not_held_rows(post):
    old = NOW - timedelta(days=6)
    post(at(old, 100), at(old + timedelta(hours=1), 101))
    with override_settings(INGEST_BACKFILL_DAYS=1):
        answer = post(at(old, 100), at(old + timedelta(hours=1), 102))
    assert answer["duplicates"] == 1
    assert [item["code"] for item in answer["rejected"]] == ["reading.conflict"]
    assert not HeldReading.objects.exists()


def test_the_same_old_reading_sent_again_is_held_once(post):
    for _ in range(3):
        post(at(NOW - timedelta(days=30), 7))
    assert HeldReading.objects.count() == 1


# --- staff review -----------------------------------------------------------------------------------


@pytest.fixture
def held(post, meter_and_token) -> HeldReading:
    meter, _ = meter_and_token
    old = NOW - timedelta(days=10)
    post(at(NOW - timedelta(hours=1), 200))
    post(at(old, 100))
    return HeldReading.objects.get(meter=meter)


def test_accepting_a_held_reading_bills_it_through_the_normal_path(held, meter_and_token, staff_user):
    meter, _ = meter_and_token
    message = accept_held(held.pk, acting_user=staff_user, now=NOW)

    held.refresh_from_db()
    assert (held.state, held.decided_by, held.decided_at) == (HeldReading.State.ACCEPTED, staff_user, NOW)
    assert held.outcome == "accepted and billed" and "accepted and billed" in message
    assert Reading.objects.filter(meter=meter, timestamp=held.timestamp, energy_kwh=Decimal("100")).exists()
    assert billed_kwh(meter) == Decimal("100")  # 100 -> 200 spread over the ten days, knowingly
    assert abs(billed_eur(meter) - Decimal("25")) < Decimal("0.01")  # each hour rounded on its own


def test_accepting_a_held_reading_leaves_when_the_meter_was_last_heard_from(held, meter_and_token, staff_user):
    meter, _ = meter_and_token
    meter.refresh_from_db()
    heard = meter.last_seen_at
    accept_held(held.pk, acting_user=staff_user, now=NOW + timedelta(hours=5))

    meter.refresh_from_db()
    assert meter.last_seen_at == heard  # staff acted, the meter did not speak: a silent meter stays silent
    assert Reading.objects.filter(meter=meter, timestamp=held.timestamp).exists()


def test_an_accepted_held_reading_that_is_the_meters_latest_becomes_its_last_reading(post, meter_and_token, staff_user):
    meter, _ = meter_and_token
    post(at(NOW - timedelta(days=10), 100))  # the meter's only reading, held
    accept_held(HeldReading.objects.get().pk, acting_user=staff_user, now=NOW)

    meter.refresh_from_db()
    assert (meter.last_reading_at, meter.last_register_kwh) == (NOW - timedelta(days=10), Decimal("100"))


def test_discarding_a_held_reading_keeps_the_row_and_bills_nothing(held, meter_and_token, staff_user):
    meter, _ = meter_and_token
    discard_held(held.pk, acting_user=staff_user, now=NOW)

    held.refresh_from_db()
    assert (held.state, held.decided_by, held.decided_at, held.outcome) == (
        HeldReading.State.DISCARDED,
        staff_user,
        NOW,
        "discarded, not billed",
    )
    assert billed_kwh(meter) == 0
    assert not Reading.objects.filter(timestamp=held.timestamp).exists()
    # A decision is final: accepting it afterwards does nothing.
    assert "already discarded" in accept_held(held.pk, acting_user=staff_user, now=NOW)
    assert billed_kwh(meter) == 0


def test_a_held_reading_the_normal_path_refuses_stays_held_with_the_reason(post, meter_and_token, staff_user):
    meter, _ = meter_and_token
    Meter.objects.filter(pk=meter.pk).update(max_power_kw=Decimal("1"))
    post(at(NOW - timedelta(hours=1), 5000))
    post(at(NOW - timedelta(days=8), 0))  # 5000 kWh in 8 days: 26 kW, above the meter's 1 kW
    held = HeldReading.objects.get()

    message = accept_held(held.pk, acting_user=staff_user, now=NOW)

    held.refresh_from_db()
    assert held.state == HeldReading.State.HELD and held.decided_by is None
    assert "above this meter's maximum of 1 kW" in held.outcome and "not accepted" in message
    assert billed_kwh(meter) == 0


def test_staff_accept_and_discard_in_the_admin_with_an_audit_trail(staff_client, staff_user, post, meter_and_token):
    meter, _ = meter_and_token
    post(at(NOW - timedelta(hours=1), 200))
    post(at(NOW - timedelta(days=10), 100), at(NOW - timedelta(days=9), 150))
    first, second = HeldReading.objects.order_by("timestamp")
    url = reverse("admin:meters_heldreading_changelist")

    page = staff_client.get(url)
    assert page.status_code == 200 and b"Accept: bill the selected readings" in page.content
    assert b"older than the billing window (7 days) when it arrived" in page.content  # why, in words
    staff_client.post(url, {"action": "discard", "_selected_action": [second.pk]})
    staff_client.post(url, {"action": "accept", "_selected_action": [first.pk, second.pk]})

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.decided_by) == (HeldReading.State.ACCEPTED, staff_user)
    assert (second.state, second.decided_by) == (HeldReading.State.DISCARDED, staff_user)
    assert billed_kwh(meter) == Decimal("100")
    history = list(
        LogEntry.objects.filter(object_id__in=[first.pk, second.pk]).values_list("object_id", "change_message")
    )
    assert sorted(history) == sorted(
        [(str(second.pk), "discarded, not billed"), (str(first.pk), "accepted and billed")]
    )


def test_staff_who_may_only_view_cannot_accept(client, held, meter_and_token):
    from django.contrib.auth.models import Permission

    from energypay.accounts.models import User

    viewer = User.objects.create_user("viewer@example.com", "pw-unused-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_heldreading"))
    client.force_login(viewer)
    url = reverse("admin:meters_heldreading_changelist")
    assert b"Accept: bill" not in client.get(url).content
    client.post(url, {"action": "accept", "_selected_action": [held.pk]})
    held.refresh_from_db()
    assert held.state == HeldReading.State.HELD


def test_the_migration_installs_existing_meters_at_their_first_reading_or_creation(make_meter):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("meters.migrations.0003_meter_installation_dips_and_held_readings")
    with_history, _ = make_meter()
    items = [(i, ReadingIn(timestamp=NOW - timedelta(days=400 - i), energy_kwh=str(10 * i))) for i in range(3)]
    ingest_readings(with_history.pk, items, NOW)
    without, _ = make_meter()
    Meter.objects.update(installed_at=NOW, previous_reading_at=None, previous_register_kwh=None)

    migration.fill_meters(apps, None)

    with_history.refresh_from_db()
    without.refresh_from_db()
    assert with_history.installed_at == NOW - timedelta(days=400)  # its first reading, before its creation
    assert (with_history.previous_reading_at, with_history.previous_register_kwh) == (
        NOW - timedelta(days=399),
        Decimal("10"),
    )
    assert without.installed_at == without.created_at
    assert without.previous_reading_at is None


heard: list[list[int]] = []


def record_usage_change(household_ids: list[int]) -> None:
    heard.append(household_ids)


def test_accepting_a_held_reading_tells_the_alarms_its_household_usage_changed(
    held, meter_and_token, staff_user, settings
):
    # Alarms (cost, energy, balance) must see billed energy whichever way it came in: meter or staff.
    settings.USAGE_CHANGED_HOOK = f"{__name__}.record_usage_change"
    meter, _ = meter_and_token
    heard.clear()
    accept_held(held.pk, acting_user=staff_user, now=NOW)
    assert heard == [[meter.household_id]]
    accept_held(held.pk, acting_user=staff_user, now=NOW)  # decided already: nothing billed, nothing told
    assert heard == [[meter.household_id]]
