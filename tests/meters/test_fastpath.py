"""The single-reading fast path (meters/fastpath.py) and the Python path are one behaviour.

The contract tests run on both paths (the ``ingest_path`` fixture, tests/meters/conftest.py). Here,
two identical households with identical meters get the same requests, one meter's through the fast
path, the other's through Python, and everything a user, staff or the next request could see must be
equal after every request: the answer, the readings, the usage lines (kWh, price, cost, tax, seq,
settled), the standing-charge lines, the meter's latest two readings, last contact and request budget,
the dip events, the household's usage version and the alarm hook's calls. The generated sequences
are mostly in order, with the rare cases the fast path hands to Python mixed in: a first reading, a
new hour, a reading on an hour boundary, dips and resets, repeats and conflicts, late readings,
settled hours and their adjustments, unpriced hours, a standing charge, taxes, too much power.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from energypay.accounts.models import User
from lib.interpolation import hourly_energy
from lib.money import cost_of
from lib.periods import HOUR, floor_hour
from meters import fastpath
from meters.models import DynamicPrice, HourlyUsage, Household, Meter, Reading, Tariff, TariffVersion

pytestmark = pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "/api/v1/readings"
START = NOW - timedelta(days=3) + timedelta(minutes=7)
HOOK = "tests.meters.test_fastpath.heard"
heard_households: list[int] = []


def heard(household_ids: list[int]) -> None:
    """settings.USAGE_CHANGED_HOOK while these tests run: what the alarm hook was told."""
    heard_households.extend(household_ids)


def mixed_tariff() -> Tariff:
    """Flat, then dynamic with some hours unpriced, then flat with a standing charge.

    Rates with six decimals, so that a cost always needs rounding: a path that rounded otherwise shows.
    """
    tariff = Tariff.objects.create(name=f"Mixed {Tariff.objects.count()}")
    TariffVersion.objects.create(
        tariff=tariff, valid_from=datetime(2020, 1, 1, tzinfo=UTC), kind="flat", flat_rate=Decimal("0.254321")
    )
    dynamic = TariffVersion.objects.create(tariff=tariff, valid_from=START.replace(minute=0) + 8 * HOUR, kind="dynamic")
    for hour in range(8, 20):
        if hour % 3:  # every third hour has no price yet
            DynamicPrice.objects.create(
                version=dynamic,
                hour_start=START.replace(minute=0) + hour * HOUR,
                rate=Decimal("0.100007") + Decimal(hour) / 1000,
            )
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=START.replace(minute=0) + 20 * HOUR,
        kind="flat",
        flat_rate=Decimal("0.310017"),
        standing_charge_per_day=Decimal("0.48"),
    )
    return tariff


def twin_meters(tariff: Tariff) -> tuple[tuple[Meter, str], tuple[Meter, str]]:
    """Two households alike in all but their ids, each with a meter: (meter, token) for each."""
    twins = []
    for name in ("fast", "python"):
        number = Household.objects.count()
        user = User.objects.create_user(f"{name}{number}@example.com")
        household = Household.objects.create(user=user, name=name, timezone="Europe/Madrid", tariff=tariff)
        meter = Meter.objects.create(
            serial=f"{name}-{number}",
            household=household,
            max_power_kw=Decimal("20"),
            installed_at=datetime(2020, 1, 1, tzinfo=UTC),
        )
        twins.append((meter, meter.issue_token()))
    return twins[0], twins[1]


def state(meter: Meter) -> dict:
    """Everything the next request, a page or staff could see of the meter and its household."""
    household = Household.objects.get(pk=meter.household_id)
    meter_fields = (
        "last_reading_at",
        "last_register_kwh",
        "previous_reading_at",
        "previous_register_kwh",
        "last_seen_at",
        "rate_window",
        "rate_count",
    )
    line_fields = (
        "kind",
        "hour_start",
        "seq",
        "kwh",
        "tariff_version_id",
        "rate",
        "cost_eur",
        "tax_rate",
        "tax_eur",
        "settled_at",
        "updated_at",
    )
    return {
        "meter": Meter.objects.filter(pk=meter.pk).values(*meter_fields).get(),
        "readings": list(meter.readings.order_by("timestamp").values_list("timestamp", "energy_kwh", "received_at")),
        "household_on_readings": set(meter.readings.values_list("household_id", flat=True)) <= {meter.household_id},
        "lines": list(
            HourlyUsage.objects.filter(household=household)
            .order_by("kind", "hour_start", "seq")
            .values_list(*line_fields)
        ),
        "events": list(meter.events.order_by("timestamp", "kind").values_list("kind", "timestamp", "new_kwh")),
        "held": list(meter.held_readings.order_by("timestamp").values_list("timestamp", "energy_kwh", "reason")),
        "usage_version": household.usage_version,
    }


# One request: what kind, and its numbers (seconds after the last accepted reading, register change in Wh).
steps = st.one_of(
    st.tuples(st.just("next"), st.integers(1, 1200), st.integers(0, 4000)),  # the usual: in order, same hour mostly
    st.tuples(st.just("next"), st.integers(1200, 3 * 3600), st.integers(0, 30000)),  # a longer gap: new hours
    st.tuples(st.just("next_us"), st.integers(1, 900_000_000), st.integers(0, 3000)),  # microseconds apart
    st.tuples(st.just("to_hour"), st.just(0), st.integers(0, 3000)),  # exactly on the next hour
    st.tuples(st.just("dip"), st.integers(1, 900), st.integers(1, 50_000)),  # a register going down
    st.tuples(st.just("power"), st.integers(1, 900), st.integers(1, 10)),  # over 20 kW
    st.tuples(st.just("again"), st.just(0), st.just(0)),  # the latest again: a duplicate
    st.tuples(st.just("conflict"), st.just(0), st.integers(1, 100)),  # the latest's time, another value
    st.tuples(st.just("late"), st.integers(1, 3000), st.integers(0, 1)),  # between stored readings
    st.tuples(st.just("settle"), st.integers(0, 1), st.just(0)),  # settlement: hours before the last (or its hour too)
    st.tuples(st.just("tax"), st.integers(0, 30), st.just(0)),  # tax rules give open lines a tax rate
    st.tuples(st.just("future"), st.integers(301, 3600), st.just(0)),  # beyond the clock's tolerance
)


class Twins:
    """Sends each request to both meters, the first through the fast path, the second through Python."""

    def __init__(self, client, django_settings, tariff: Tariff) -> None:
        self.client, self.settings = client, django_settings
        (self.fast, self.fast_token), (self.python, self.python_token) = twin_meters(tariff)
        self.last: tuple[datetime, Decimal] = (START, Decimal("1000.000"))

    def post(self, timestamp: datetime, kwh: Decimal) -> None:
        body = json.dumps({"timestamp": timestamp.isoformat(), "energy_kwh": str(kwh)})
        answers = []
        for token, fast in ((self.fast_token, True), (self.python_token, False)):
            self.settings.INGEST_FAST_PATH = fast
            heard_households.clear()
            response = self.client.post(URL, body, "application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
            answers.append((response.status_code, response.json(), len(heard_households)))
        assert answers[0] == answers[1], (timestamp, kwh)
        status, answer, _ = answers[0]
        if status == 200 and answer["accepted"] and timestamp > self.last[0]:
            self.last = (timestamp, kwh)

    def step(self, kind: str, a: int, b: int) -> None:
        (last_at, last_kwh), wh = self.last, Decimal(b) / 1000
        both = [self.fast.household_id, self.python.household_id]
        if kind == "next":
            self.post(last_at + timedelta(seconds=a), last_kwh + wh)
        elif kind == "next_us":
            self.post(last_at + timedelta(microseconds=a), last_kwh + wh)
        elif kind == "to_hour":
            self.post(floor_hour(last_at) + HOUR, last_kwh + wh)
        elif kind == "dip":
            self.post(last_at + timedelta(seconds=a), max(Decimal(0), last_kwh - wh))
        elif kind == "power":
            self.post(last_at + timedelta(seconds=a), last_kwh + Decimal(20 * a + b) / 3600 + Decimal("0.001"))
        elif kind == "again":
            self.post(last_at, last_kwh)
        elif kind == "conflict":
            self.post(last_at, last_kwh + wh)
        elif kind == "late":
            self.post(last_at - timedelta(seconds=a), max(Decimal(0), last_kwh - Decimal(a) / 3600 - wh))
        elif kind == "settle":
            # What settlement does to the ledger: priced open lines of closed hours become settled.
            HourlyUsage.objects.filter(
                household__in=both,
                hour_start__lt=floor_hour(last_at) + a * HOUR,
                settled_at__isnull=True,
                cost_eur__isnull=False,
            ).update(settled_at=NOW)
        elif kind == "tax":
            # A combined factor such as VAT on an electricity tax: twelve decimals, like the column's.
            tax_rate = (Decimal(a) / 70).quantize(Decimal("1E-12"))
            HourlyUsage.objects.filter(household__in=both, settled_at__isnull=True).update(tax_rate=tax_rate)
        elif kind == "future":
            self.post(NOW + timedelta(seconds=a), last_kwh + wh)


@pytest.fixture
def make_twins(db, client, settings):
    """A new pair of twins per hypothesis example (the database is rolled back only after the test)."""
    settings.USAGE_CHANGED_HOOK = HOOK
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 10_000
    return lambda tariff=None: Twins(client, settings, tariff or mixed_tariff())


@pytest.fixture
def fast_answers(monkeypatch) -> list[bool]:
    """Whether each request's answer came from the fast path."""
    answers: list[bool] = []
    real = fastpath.ingest

    def counting(*args, **kwargs):
        answer = real(*args, **kwargs)
        answers.append(answer is not None)
        return answer

    monkeypatch.setattr(fastpath, "ingest", counting)
    return answers


@time_machine.travel(NOW, tick=False)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests=st.lists(steps, min_size=1, max_size=30))
# A line of an hour split between two readings (0.116667 kWh) taxed, then a fast update: its tax comes
# from the rounded cost (as _apply's does), which here differs from the tax of the unrounded one.
@example(requests=[("next", 3600, 1000), ("tax", 3, 0), ("next", 60, 1)])
def test_both_paths_give_the_same_answers_ledger_meter_and_hook_calls(make_twins, fast_answers, requests):
    fast_answers.clear()
    twins = make_twins()
    twins.post(START, Decimal("1000.000"))
    for kind, a, b in requests:
        twins.step(kind, a, b)
        assert state(twins.fast) == state(twins.python), kind
    taken = sum(fast_answers[0::2])
    event(f"fast path answered {'none' if not taken else 'some' if taken < 5 else '5 or more'}")


@time_machine.travel(NOW, tick=False)
def test_a_day_of_readings_every_five_minutes_takes_the_fast_path_but_for_each_new_hour(
    make_twins, fast_answers, flat_tariff
):
    twins = make_twins(flat_tariff)
    twins.post(START, Decimal("1000.000"))
    for _ in range(24 * 12):
        twins.step("next", 300, 150)
    assert state(twins.fast) == state(twins.python)
    # Every second answer is the Python twin's (the fast path is off for it): count the fast twin's.
    fast = fast_answers[0::2]
    hours = len({floor_hour(t) for t in Reading.objects.filter(meter=twins.fast).values_list("timestamp", flat=True)})
    # Python takes the first reading, the second (it opens the hour's line) and the first of each
    # new hour (a line to open); the fast path all the others.
    assert fast.count(False) == 1 + hours
    assert len(fast) == 24 * 12 + 1


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_usual_reading_is_one_statement(client, make_meter, settings):
    """No BEGIN, no COMMIT (the statement is its own transaction), no health check's SELECT 1 before it."""
    settings.USAGE_CHANGED_HOOK = ""
    _, token = make_meter()
    now = datetime.now(UTC).replace(microsecond=0)
    hour = floor_hour(now) if now.minute >= 3 else floor_hour(now) - HOUR
    first, second, third = (hour + timedelta(minutes=m) for m in (0, 1, 2))
    for moment, kwh in ((first, "10"), (second, "10.01")):
        post_one(client, token, moment, kwh)
    with CaptureQueriesContext(connection) as queries:
        assert post_one(client, token, third, "10.02") == {"accepted": 1, "duplicates": 0, "rejected": []}
    # One statement, prepared (so Django's log has no text for it: psycopg keeps none for a prepared run).
    assert len(queries) == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        assert [statement.split("(")[0] for (statement,) in cursor.fetchall()] == [
            "SELECT outcome, household FROM meters_ingest_reading"
        ]


def post_one(client, token: str, moment: datetime, kwh: str) -> dict:
    body = json.dumps({"timestamp": moment.isoformat(), "energy_kwh": kwh})
    response = client.post(URL, body, "application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content
    return response.json()


@time_machine.travel(NOW, tick=False)
def test_the_hook_hears_an_accepted_reading_once_and_a_repeat_not_at_all(
    client, meter_and_token, settings, fast_answers
):
    settings.USAGE_CHANGED_HOOK = HOOK
    meter, token = meter_and_token
    post_one(client, token, NOW - timedelta(minutes=30), "5")
    post_one(client, token, NOW - timedelta(minutes=20), "5.5")
    heard_households.clear()
    assert post_one(client, token, NOW - timedelta(minutes=10), "6")["accepted"] == 1
    assert heard_households == [meter.household_id]
    assert post_one(client, token, NOW - timedelta(minutes=10), "6") == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert heard_households == [meter.household_id]
    assert fast_answers == [False, False, True, True]


@time_machine.travel(NOW, tick=False)
def test_a_statement_that_fails_leaves_the_request_to_python(client, meter_and_token, monkeypatch, caplog):
    meter, token = meter_and_token
    post_one(client, token, NOW - timedelta(minutes=30), "5")
    post_one(client, token, NOW - timedelta(minutes=20), "5.5")
    monkeypatch.setattr(fastpath, "_STATEMENT", "SELECT 1 / 0, %s, %s, %s, %s, %s, %s, %s, %s")
    assert post_one(client, token, NOW - timedelta(minutes=10), "6")["accepted"] == 1
    assert "ingest_fast_path_failed" in caplog.text
    meter.refresh_from_db()
    assert (meter.last_reading_at, meter.last_register_kwh) == (NOW - timedelta(minutes=10), Decimal("6"))
    assert HourlyUsage.objects.get(meter=meter).kwh == Decimal("1")


@pytest.mark.django_db(transaction=True)
def test_concurrent_single_readings_on_both_paths_count_each_reading_once(make_meter, settings):
    """Threads post one meter's readings one by one, in order and late, repeated: the fast path's lock
    and Python's are the same row lock, so every reading counts once and usage is the sorted stream's."""
    settings.USAGE_CHANGED_HOOK = ""
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 10_000
    meter, token = make_meter()
    start = floor_hour(datetime.now(UTC)) - timedelta(hours=20)
    history = [(start + timedelta(minutes=5 * i), Decimal(i * 150) / 1000) for i in range(200)]
    rng = random.Random(12)
    # Mostly in order (the fast path's case) with some of them again and late, shuffled a little.
    sends = history + rng.sample(history, 60)
    for _ in range(40):
        i, j = rng.randrange(len(sends)), rng.randrange(len(sends))
        sends[i], sends[j] = sends[j], sends[i]
    lanes = [sends[k::4] for k in range(4)]
    answers, errors = [], []

    def send(lane) -> None:
        client = Client()
        try:
            for moment, kwh in lane:
                answers.append(post_one(client, token, moment, str(kwh)))
        except Exception as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(lane,)) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(answer["accepted"] for answer in answers) == len(history) == meter.readings.count()
    assert sum(answer["duplicates"] for answer in answers) == len(sends) - len(history)
    usage: dict[datetime, Decimal] = {}
    for line in HourlyUsage.objects.filter(meter=meter):
        usage[line.hour_start] = usage.get(line.hour_start, Decimal(0)) + line.kwh
        assert line.cost_eur == cost_of(line.kwh, Decimal("0.25"))
    assert {hour: kwh for hour, kwh in usage.items() if kwh} == hourly_energy(history)
    meter.refresh_from_db()
    assert (meter.last_reading_at, meter.last_register_kwh) == history[-1]
    assert (meter.previous_reading_at, meter.previous_register_kwh) == history[-2]


@pytest.mark.django_db
def test_the_function_keeps_generic_plans_so_no_call_is_planned_again():
    """meters/0017: planned at every call, the function cost the backend twice its time (the migration's
    figures). A later migration that replaces the function (CREATE OR REPLACE resets its settings)
    must set plan_cache_mode again."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = 'meters_ingest_reading'")
        assert cursor.fetchall() == [(["plan_cache_mode=force_generic_plan"],)]
