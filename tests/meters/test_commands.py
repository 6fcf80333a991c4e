"""The meter commands: issue_meter_token, seed_demo, simulate_meters; and the demo load profile."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from statistics import mean

import pytest
import requests
import responses
import time_machine
from django.contrib.auth import authenticate
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from energypay.accounts.models import User
from meters.bands import parse_bands
from meters.ingest import ingest_readings
from meters.load_profile import SLOT, LoadProfile, floor_slot
from meters.management.commands.simulate_meters import Command as SimulateMeters
from meters.management.commands.simulate_meters import TokenFile
from meters.models import HourlyUsage, Household, Meter, Reading, StandingMark, Tariff, TariffVersion
from meters.schema import ReadingIn

NOW = datetime(2026, 11, 22, 10, 7, 30, tzinfo=UTC)
FAKE_URL = "http://meters.test"
FAKE_ENDPOINT = FAKE_URL + "/api/v1/readings"


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def seed(households: int = 2, days: int = 2, at: datetime = NOW) -> str:
    with time_machine.travel(at, tick=False):
        out, _ = run("seed_demo", "--households", str(households), "--days", str(days))
    return out


def counts() -> dict[str, int]:
    models = [User, Household, Meter, Tariff, TariffVersion, Reading, HourlyUsage]
    return {model.__name__: model.objects.count() for model in models}


def usage_kwh(meter: Meter) -> Decimal:
    return HourlyUsage.objects.filter(meter=meter).aggregate(total=Sum("kwh"))["total"] or Decimal("0")


def register_span(meter: Meter) -> Decimal:
    readings = meter.readings.order_by("timestamp")
    return readings.last().energy_kwh - readings.first().energy_kwh


def give_reading(meter: Meter, at: datetime, kwh: str) -> None:
    item = ReadingIn(timestamp=at.isoformat(), energy_kwh=Decimal(kwh))
    outcome = ingest_readings(meter.pk, [(0, item)], timezone.now())
    assert outcome.accepted == 1


def forward_to_django(request) -> tuple[int, dict, str]:
    """A `responses` callback that hands the request to the real ingest view."""
    answer = Client().post(
        "/api/v1/readings",
        request.body,
        content_type="application/json",
        HTTP_AUTHORIZATION=request.headers["Authorization"],
    )
    return answer.status_code, {}, answer.content.decode()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _simulator_tokens_in_tmp(settings, tmp_path):
    settings.VAR_DIR = tmp_path  # the simulator keeps its tokens there, not in the checkout's var/


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The simulator's pauses, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(SimulateMeters, "pause", lambda self, seconds: recorded.append(seconds))
    return recorded


# --- issue_meter_token ----------------------------------------------------------------------------


def test_issue_meter_token_prints_a_new_token_and_the_old_one_stops_working(meter_and_token):
    meter, old_token = meter_and_token

    out, err = run("issue_meter_token", meter.serial)

    new_token = out.strip()
    assert out == new_token + "\n"
    assert "previous token no longer works" in err
    assert Meter.for_token(old_token) is None
    assert Meter.for_token(new_token) == meter


def test_issue_meter_token_for_an_unknown_serial_fails_and_changes_nothing(meter_and_token):
    meter, token = meter_and_token

    with pytest.raises(CommandError, match="No meter has the serial 'NOPE-1'"):
        run("issue_meter_token", "NOPE-1")

    assert Meter.for_token(token) == meter
    meter.refresh_from_db()
    assert meter.token_hash is not None


# --- seed_demo ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_seed_demo_creates_household_and_staff_logins_with_password_demo():
    seed()

    demo = authenticate(email="demo@example.com", password="demo")
    assert demo is not None
    assert not demo.is_staff
    assert demo.household.timezone == "Europe/Madrid"
    assert demo.household.address
    assert list(demo.household.meters.values_list("serial", flat=True)) == ["DEMO-0001"]
    assert authenticate(email="demo2@example.com", password="demo") is not None
    staff = authenticate(email="staff@example.com", password="demo")
    assert staff is not None
    assert staff.is_staff
    assert staff.is_superuser


@pytest.mark.django_db
def test_seed_demo_creates_a_flat_a_time_of_use_and_a_2_0td_tariff_in_force_before_the_history():
    seed(households=3, days=2)  # the demo login on 2.0TD, the second flat, the third time of use

    flat = TariffVersion.objects.get(kind=TariffVersion.Kind.FLAT)
    assert flat.flat_rate == Decimal("0.24")
    assert flat.standing_charge_per_day == Decimal("0.35")
    tou = TariffVersion.objects.get(kind=TariffVersion.Kind.TIME_OF_USE)
    rates = {band.rate for band in parse_bands(tou.bands)}
    assert len(rates) >= 2
    td = TariffVersion.objects.get(kind=TariffVersion.Kind.PERIODS)
    assert (td.calendar, set(td.energy_prices()), set(td.power_prices())) == ("2.0TD", {"P1", "P2", "P3"}, {"P1", "P2"})
    for version in (flat, tou, td):
        assert version.valid_from < NOW - timedelta(days=365)
    assert set(Household.objects.values_list("tariff", flat=True)) == {flat.tariff_id, tou.tariff_id, td.tariff_id}
    assert Household.objects.get(user__email="demo@example.com").tariff_id == td.tariff_id


@pytest.mark.django_db
def test_seed_demo_adds_a_reading_every_quarter_hour_from_days_ago_up_to_now():
    out = seed(households=2, days=2)

    per_meter = 2 * 96 + 1
    for meter in Meter.objects.all():
        timestamps = list(meter.readings.order_by("timestamp").values_list("timestamp", flat=True))
        assert len(timestamps) == per_meter
        assert timestamps[0] == floor_slot(NOW) - timedelta(days=2)
        assert timestamps[-1] == floor_slot(NOW)
        assert meter.last_reading_at == floor_slot(NOW)
    assert f"{2 * per_meter} readings added" in out


@pytest.mark.django_db
def test_seed_demo_hourly_usage_adds_up_to_each_meters_register():
    seed(households=3, days=2)

    for meter in Meter.objects.all():
        assert usage_kwh(meter) > 0
        assert usage_kwh(meter) == register_span(meter)
        assert HourlyUsage.objects.filter(meter=meter, cost_eur__isnull=True).count() == 0
        # The fixed charge: the standing charge, or on 2.0TD (the demo login) the power term and the meter's rental.
        on_power = meter.household.tariff.versions.get().has_power_term
        fixed = [HourlyUsage.Kind.POWER, HourlyUsage.Kind.RENTAL] if on_power else [HourlyUsage.Kind.STANDING]
        for kind in fixed:
            assert HourlyUsage.objects.filter(household=meter.household, kind=kind).exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mark",
    [
        None,  # gone: a transactional test's flush empties every table, the migration's mark with them
        NOW - timedelta(days=2, hours=6),  # behind the history: a database migrated long before, beat never run
        NOW + timedelta(days=15),  # ahead of the clock: the migration ran on the wall clock, the test travels back
    ],
    ids=["no mark", "mark before the history", "mark after now"],
)
def test_seed_demo_bills_every_hour_of_the_history_its_fixed_charges_wherever_the_standing_job_stands(mark):
    StandingMark.objects.all().delete()
    if mark is not None:
        StandingMark.objects.create(pk=1, accrued_until=mark.replace(minute=0, second=0))

    seed(households=2, days=2)

    # The history starts at 10:00 two days ago (floor_slot(NOW) - 2 days): 48 hours up to 10:00 today.
    first, hours = datetime(2026, 11, 20, 10, tzinfo=UTC), 48
    demo, flat = Household.objects.order_by("pk")
    for household, kind in [(demo, "power"), (demo, "rental"), (flat, "standing")]:
        lines = HourlyUsage.objects.filter(
            household=household, kind=kind, hour_start__lt=first + timedelta(hours=hours)
        )
        assert lines.count() == hours, (household, kind)
        assert lines.order_by("hour_start").first().hour_start == first
    # 4.6 kW x (0.073777 + 0.001911) EUR/kW/day = 0.3481648 a day; 21 November is a whole local day of 24 hours.
    day = HourlyUsage.objects.filter(
        household=demo,
        kind="power",
        hour_start__gte=datetime(2026, 11, 20, 23, tzinfo=UTC),
        hour_start__lt=datetime(2026, 11, 21, 23, tzinfo=UTC),
    )
    assert day.aggregate(eur=Sum("cost_eur"))["eur"] == Decimal("0.348165")
    assert StandingMark.objects.get().accrued_until >= NOW.replace(minute=0, second=0)


@pytest.mark.django_db
def test_seed_demo_rents_the_demo_logins_meter_from_the_first_hour_of_a_history_longer_than_the_backfill_window(
    settings,
):
    # A new meter is taken as installed the backfill window ago unless told otherwise: the demo's meters were
    # installed when their history starts, and their rental accrues from then, not from a week ago.
    assert settings.INGEST_BACKFILL_DAYS < 9
    seed(households=1, days=9)

    rental = HourlyUsage.objects.filter(kind="rental", hour_start__lt=datetime(2026, 11, 22, 10, tzinfo=UTC))
    assert rental.count() == 9 * 24
    assert rental.order_by("hour_start").first().hour_start == datetime(2026, 11, 13, 10, tzinfo=UTC)


@pytest.mark.django_db
def test_seed_demo_twice_at_the_same_time_adds_nothing():
    seed()
    before = counts()

    out = seed()

    assert counts() == before
    assert "0 readings added" in out


@pytest.mark.django_db
def test_seed_demo_later_continues_each_register_from_its_last_reading():
    seed(households=2, days=1)
    last = {meter.pk: meter.last_register_kwh for meter in Meter.objects.all()}

    out = seed(households=2, days=1, at=NOW + timedelta(hours=1))

    assert "8 readings added" in out
    for meter in Meter.objects.all():
        new = list(meter.readings.filter(timestamp__gt=floor_slot(NOW)).order_by("timestamp"))
        assert [reading.timestamp for reading in new] == [floor_slot(NOW) + SLOT * n for n in range(1, 5)]
        assert new[0].energy_kwh >= last[meter.pk]
        assert usage_kwh(meter) == register_span(meter)


@pytest.mark.django_db
def test_seed_demo_with_more_households_adds_only_the_new_ones():
    seed(households=1, days=1)

    out = seed(households=2, days=1)

    assert "2 households (1 new)" in out
    assert Household.objects.count() == 2
    assert Meter.objects.get(serial="DEMO-0002").readings.count() == 97
    assert Meter.objects.get(serial="DEMO-0001").readings.count() == 97


@pytest.mark.django_db
def test_seed_demo_refuses_zero_households():
    with pytest.raises(CommandError, match="at least 1"):
        run("seed_demo", "--households", "0")
    assert counts()["Household"] == 0


# --- load profile ---------------------------------------------------------------------------------


def average_kw(month: int, local_hour: int, households=range(1, 6)) -> float:
    """Mean power over 28 days of a month at one local hour (Madrid is UTC+1 in Jan/Mar, +2 in Jul)."""
    offset = 2 if 4 <= month <= 10 else 1
    values = []
    for index in households:
        profile = LoadProfile(index, "Europe/Madrid")
        for day in range(1, 29):
            hour_utc = datetime(2026, month, day, tzinfo=UTC) + timedelta(hours=local_hour - offset)
            values.extend(profile.slot_kw(hour_utc + SLOT * quarter) for quarter in range(4))
    return mean(values)


def test_load_profile_evening_peak_uses_more_than_four_in_the_morning():
    assert average_kw(3, 20) > 2 * average_kw(3, 4)


def test_load_profile_uses_more_in_january_than_in_july():
    january = mean(average_kw(1, hour) for hour in range(24))
    july = mean(average_kw(7, hour) for hour in range(24))
    assert january > 1.3 * july


def test_load_profile_is_the_same_for_the_same_household_and_slot_and_differs_between_households():
    slot = datetime(2026, 1, 12, 19, 0, tzinfo=UTC)
    assert LoadProfile(1, "Europe/Madrid").slot_kwh(slot) == LoadProfile(1, "Europe/Madrid").slot_kwh(slot)
    days = [slot + timedelta(days=n) for n in range(7)]
    assert [LoadProfile(1, "Europe/Madrid").slot_kwh(day) for day in days] != [
        LoadProfile(2, "Europe/Madrid").slot_kwh(day) for day in days
    ]


def test_load_profile_readings_rise_every_quarter_hour_across_a_25_hour_day():
    # Madrid leaves summer time on 2026-10-25: that local day has 25 hours, 100 quarter hours.
    start = datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    readings = LoadProfile(1, "Europe/Madrid").readings(start, Decimal("100.000"), start + timedelta(hours=25))
    assert len(readings) == 100
    registers = [Decimal("100.000")] + [kwh for _, kwh in readings]
    assert all(b > a for a, b in itertools.pairwise(registers))


def test_load_profile_after_an_odd_moment_reads_at_the_next_quarter_hour_with_a_partial_slot():
    profile = LoadProfile(3, "Europe/Madrid")
    slot = datetime(2026, 2, 2, 20, 0, tzinfo=UTC)
    readings = profile.readings(slot + timedelta(minutes=10), Decimal("5.000"), slot + timedelta(minutes=30))
    assert [at for at, _ in readings] == [slot + SLOT, slot + 2 * SLOT]
    assert readings[0][1] - Decimal("5.000") < profile.slot_kwh(slot)


# --- simulate_meters ------------------------------------------------------------------------------


@pytest.mark.usefixtures("transactional_db")
def test_simulate_meters_once_posts_the_backlog_since_seed_demo_to_a_live_server(live_server):
    seeded_at = timezone.now() - timedelta(hours=2)
    seed(households=1, days=1, at=seeded_at)
    meter = Meter.objects.get(serial="DEMO-0001")
    old_last_at, old_register = meter.last_reading_at, meter.last_register_kwh

    out, err = run("simulate_meters", "--url", live_server.url, "--once")

    meter.refresh_from_db()
    sent = meter.readings.count() - 97
    assert sent >= (meter.last_reading_at - old_last_at) // SLOT >= 8  # every quarter hour, and the register now
    assert timezone.now() - meter.last_reading_at < timedelta(minutes=1)
    assert f"{sent} readings sent ({sent} accepted, 0 duplicates, 0 rejected), 0 waiting" in out
    assert "Issued new tokens for 1 meter (DEMO-0001)" in err
    assert meter.last_register_kwh > old_register
    assert usage_kwh(meter) == register_span(meter)


@pytest.mark.django_db
@responses.activate
def test_simulate_meters_started_right_after_seed_demo_sends_the_register_now_and_says_what_it_does(waits):
    seed(households=2, days=1, at=NOW - timedelta(minutes=5))  # the last seeded reading: 10:00, this quarter hour
    responses.add_callback(responses.POST, FAKE_ENDPOINT, callback=forward_to_django)
    before = {meter.serial: meter.last_register_kwh for meter in Meter.objects.all()}

    with time_machine.travel(NOW, tick=False):  # 10:07:30
        out, _ = run("simulate_meters", "--url", FAKE_URL, "--interval", "60", "--once")

    assert f"Posting readings of 2 meters to {FAKE_ENDPOINT} now, then every 60 s (once)." in out
    assert "round 1: 2 meters, 2 readings sent (2 accepted, 0 duplicates, 0 rejected), 0 waiting" in out
    for meter in Meter.objects.all():
        assert meter.last_reading_at == NOW
        assert meter.last_register_kwh > before[meter.serial]  # 7.5 minutes of the quarter hour's power
        assert usage_kwh(meter) == register_span(meter)


def test_the_register_between_quarter_hours_joins_the_next_quarter_hours_reading():
    profile = LoadProfile(1, "Europe/Madrid")
    slot = floor_slot(NOW)
    now = profile.register_at(slot, Decimal("5.000"), NOW)
    (at, next_quarter), *_ = profile.readings(NOW, now, slot + SLOT)
    assert at == slot + SLOT
    assert Decimal("5.000") < now < next_quarter
    assert abs(next_quarter - Decimal("5.000") - profile.slot_kwh(slot)) <= Decimal("0.001")  # rounding each part
    with pytest.raises(ValueError):
        profile.register_at(slot - SLOT, Decimal("5.000"), NOW)


@pytest.mark.django_db
@responses.activate
def test_simulate_meters_reuses_its_kept_tokens_and_rotates_them_only_when_told(make_meter, tmp_path, waits):
    meter, _ = make_meter()
    responses.add_callback(responses.POST, FAKE_ENDPOINT, callback=forward_to_django)

    _, err = run("simulate_meters", "--url", FAKE_URL, "--once")
    assert f"Issued new tokens for 1 meter ({meter.serial}); their previous tokens no longer work" in err
    kept = tmp_path / "simulator-tokens.json"
    assert kept.stat().st_mode & 0o777 == 0o600
    meter.refresh_from_db()
    first_hash = meter.token_hash

    out, err = run("simulate_meters", "--url", FAKE_URL, "--once")
    assert "Issued new tokens" not in err and f"Reusing the tokens kept in {kept} for 1 meter" in err
    meter.refresh_from_db()
    assert meter.token_hash == first_hash  # the meter's token still works: nothing rotated silently
    assert "0 rejected" in out and "HTTP 401" not in out

    run("issue_meter_token", meter.serial)  # staff gave the meter a new token: the kept one is dead
    _, err = run("simulate_meters", "--url", FAKE_URL, "--once")
    assert f"Issued new tokens for 1 meter ({meter.serial})" in err

    meter.refresh_from_db()
    before = meter.token_hash
    _, err = run("simulate_meters", "--url", FAKE_URL, "--once", "--rotate-tokens")
    meter.refresh_from_db()
    assert meter.token_hash != before and "Issued new tokens for 1 meter" in err


@pytest.mark.django_db
@responses.activate
def test_simulate_meters_waits_out_a_429_and_then_delivers_every_reading(make_meter, waits):
    meter, _ = make_meter()
    start = floor_slot(timezone.now()) - timedelta(hours=1)
    give_reading(meter, start, "1000.000")
    responses.add(
        responses.POST, FAKE_ENDPOINT, status=429, json={"error": "too many requests"}, headers={"Retry-After": "7"}
    )
    responses.add_callback(responses.POST, FAKE_ENDPOINT, callback=forward_to_django)

    out, _ = run("simulate_meters", "--url", FAKE_URL, "--once")

    assert waits == [7]
    first, second = (json.loads(call.request.body) for call in responses.calls)
    assert first == second
    assert len(first["readings"]) >= 4
    assert meter.readings.count() == 1 + len(first["readings"])
    assert "0 waiting" in out


@pytest.mark.django_db
@responses.activate
def test_simulate_meters_keeps_the_backlog_while_the_server_is_down_and_sends_it_next_round(
    make_meter, waits, tmp_path
):
    meter, _ = make_meter()
    give_reading(meter, floor_slot(timezone.now()) - timedelta(hours=1), "50.000")
    command = SimulateMeters(stdout=io.StringIO(), stderr=io.StringIO())
    command.connect(FAKE_URL)
    fleet = command.start(command.select_meters([meter.serial]), TokenFile(tmp_path / "tokens.json"), rotate=False)
    responses.add(responses.POST, FAKE_ENDPOINT, body=requests.ConnectionError("connection refused"))

    down = command.run_round(fleet, timezone.now())

    assert down.sent == 0
    assert down.pending >= 4
    assert "cannot reach" in down.problems[0]
    assert meter.readings.count() == 1

    responses.remove(responses.POST, FAKE_ENDPOINT)
    responses.add_callback(responses.POST, FAKE_ENDPOINT, callback=forward_to_django)
    up = command.run_round(fleet, timezone.now())

    assert up.sent == up.accepted == down.pending
    assert up.pending == 0
    assert meter.readings.count() == 1 + up.sent


@pytest.mark.django_db
def test_simulate_meters_with_an_unknown_serial_fails_and_issues_no_tokens(meter_and_token):
    meter, token = meter_and_token

    with pytest.raises(CommandError, match="NOPE-1"):
        run("simulate_meters", "--url", FAKE_URL, "--once", "--serial", meter.serial, "--serial", "NOPE-1")

    assert Meter.for_token(token) == meter


@pytest.mark.django_db
@responses.activate
def test_simulate_meters_once_fails_when_readings_are_left_undelivered(make_meter, waits):
    meter, _ = make_meter()
    give_reading(meter, floor_slot(timezone.now()) - timedelta(minutes=30), "1.000")
    responses.add(responses.POST, FAKE_ENDPOINT, status=503, json={"error": "down"}, headers={"Retry-After": "30"})

    with pytest.raises(CommandError, match="could not be delivered"):
        run("simulate_meters", "--url", FAKE_URL, "--once")

    assert waits == [30, 30]
    assert len(responses.calls) == 3
