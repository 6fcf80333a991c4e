"""A register that goes down: a one-off glitch bills nothing and blocks nothing; a reset counts once.

docs/ingest.md, "Register dips". The properties run on SQLite and PostgreSQL alike
(DATABASE_URL=postgres://... pytest tests/meters/test_register_dips.py).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energypay.accounts.models import User
from lib.interpolation import dips, hourly_energy
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Household, Meter, MeterEvent, Tariff
from meters.schema import ReadingIn
from tests.meters.ingestkit import accepted
from tests.meters.test_usage_properties import deliveries

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def billed_kwh(meter: Meter) -> Decimal:
    return sum(HourlyUsage.objects.filter(meter=meter).values_list("kwh", flat=True), Decimal(0))


def events(meter: Meter) -> list[tuple[str, Decimal, Decimal]]:
    return list(meter.events.order_by("timestamp").values_list("kind", "previous_kwh", "new_kwh"))


# --- examples, through the API (issue 11, finding 2) -------------------------------------------------


@pytest.fixture
def post(client, make_meter):
    meter, token = make_meter(max_power_kw="40")

    def send(*readings: tuple[int, object]) -> dict:
        items = [
            {"timestamp": (NOW - timedelta(minutes=ago)).isoformat(), "energy_kwh": str(kwh)} for ago, kwh in readings
        ]
        return accepted(client, token, items)

    send.meter = meter
    return send


def pytestmark_api(test):
    """Through the API, frozen at NOW, on both ingest paths (tests/meters/conftest.py)."""
    return pytest.mark.time_machine(NOW, tick=False)(pytest.mark.usefixtures("ingest_path")(test))


@pytestmark_api
def test_a_dip_and_recovery_in_one_batch_bills_only_the_rise(post):
    answer = post((60, 5000), (45, 0), (30, 5001))
    assert answer == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert billed_kwh(post.meter) == Decimal("1")  # was 5001: the whole register again
    assert events(post.meter) == [("glitch", Decimal("5000"), Decimal("0"))]


@pytestmark_api
def test_readings_near_the_old_register_after_a_dip_are_accepted(post):
    post((60, 5000))
    post((45, 0))  # a bad read: for now a candidate reset
    assert events(post.meter) == [("reset", Decimal("5000"), Decimal("0"))]

    answer = post((30, "5000.5"))  # was refused: "implies 20002.000 kW since the previous reading"

    assert answer == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert post((15, 5001)) == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert billed_kwh(post.meter) == Decimal("1")
    assert events(post.meter) == [("glitch", Decimal("5000"), Decimal("0"))]
    post.meter.refresh_from_db()
    assert (post.meter.previous_register_kwh, post.meter.last_register_kwh) == (Decimal("5000.5"), Decimal("5001"))


@pytestmark_api
def test_a_dip_the_next_reading_continues_from_is_a_reset_counted_once(post):
    post((60, 5000))
    post((45, 2))
    post((30, 3))
    post((15, 4))
    assert billed_kwh(post.meter) == Decimal("2")  # 2 -> 3 -> 4; the drop itself is no consumption
    assert events(post.meter) == [("reset", Decimal("5000"), Decimal("2"))]


@pytestmark_api
def test_a_late_reading_that_would_bill_a_glitch_again_is_refused(post):
    post((60, 5000), (30, 0), (15, 5001))  # 0 is a glitch: 1 kWh billed
    # 5000, 1, 0, 5001 would make 1 a reset and 0 a glitch after it: 1 -> 5001 in 30 minutes.
    answer = post((45, 1))
    assert answer["accepted"] == 0
    assert answer["rejected"] == [
        {
            "index": 0,
            "code": "reading.max_power",
            "error": "implies 10000.000 kW until the next reading, above this meter's maximum of 40 kW",
        }
    ]
    assert billed_kwh(post.meter) == Decimal("1")


# --- properties: the invariant, and order independence -------------------------------------------------

START = datetime(2026, 3, 28, 20, 7, tzinfo=UTC)  # runs across Madrid's 23-hour day
MAX_KW = Decimal("40")


@st.composite
def histories_with_dips(draw) -> tuple[list[tuple[datetime, Decimal]], Decimal, set[datetime]]:
    """A meter's readings with one-off glitches and confirmed resets, its true consumption, and its glitches.

    True consumption: every rise of the real register (glitches are bad reads, not the register; a
    reset starts a new baseline). Nothing else may be billed.
    """
    count = draw(st.integers(min_value=2, max_value=24))
    # Registers up to 1,000 kWh and 5 minutes or more between readings: whatever subset has arrived,
    # no interval between two of them implies more than the lifted max power of the first property.
    moment, register = START, Decimal(draw(st.integers(0, 10**6))) / 1000
    history, consumed, glitches = [(moment, register)], Decimal(0), set()
    ceiling = None  # after a reset: the next reading stays below the old register (it confirms the reset)
    forced_rise = False
    for _ in range(count - 1):
        seconds = draw(st.integers(min_value=300, max_value=3 * 3600))
        moment += timedelta(seconds=seconds)
        kind = "rise" if forced_rise else draw(st.sampled_from(["rise", "rise", "rise", "glitch", "reset"]))
        forced_rise = False
        if kind != "rise" and register > 0 and ceiling is None:
            low = Decimal(draw(st.integers(0, int(register * 1000) - 1))) / 1000
            history.append((moment, low))
            if kind == "glitch":
                glitches.add(moment)
                forced_rise = True  # the glitch is over when the next reading is back at the register
            else:
                ceiling, register = register, low
            continue
        most = int(MAX_KW * seconds * 1000 / 3600)
        rise = Decimal(draw(st.integers(0, most))) / 1000
        if ceiling is not None:
            rise = min(rise, ceiling - register - Decimal("0.001"))
            ceiling = None
        register += rise
        consumed += rise
        history.append((moment, register))
    if history[-1][0] in glitches:
        glitches.discard(history[-1][0])  # nothing came after it yet: a candidate reset
    return history, consumed, glitches


def _make_meter(tariff: Tariff, email: str, max_kw: Decimal) -> Meter:
    user = User.objects.create_user(email)
    household = Household.objects.create(user=user, name=email, timezone="Europe/Madrid", tariff=tariff)
    return Meter.objects.create(serial=email, household=household, max_power_kw=max_kw)


def _send(meter: Meter, batch) -> list[dict]:
    items = [(i, ReadingIn(timestamp=t, energy_kwh=kwh)) for i, (t, kwh) in enumerate(batch)]
    return ingest_readings(meter.pk, items, timezone.now()).rejected


def _usage_by_hour(meter: Meter) -> dict[datetime, Decimal]:
    totals: defaultdict[datetime, Decimal] = defaultdict(Decimal)
    for line in HourlyUsage.objects.filter(meter=meter):
        totals[line.hour_start] += line.kwh
    return {hour: kwh for hour, kwh in totals.items() if kwh}


def _settle_before(meter: Meter, hour: datetime) -> None:
    HourlyUsage.objects.filter(meter=meter, hour_start__lt=hour, settled_at__isnull=True).update(
        settled_at=timezone.now()
    )


PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@PROPERTY
@given(data=st.data())
def test_billed_energy_is_the_true_consumption_whatever_the_order_and_batching(flat_tariff, data):
    """Energy billed = the register's rises between billing readings, a confirmed reset counted once.

    The meter's max power is lifted: a subset of readings that arrived early may look like anything
    (a glitch before the reading it dipped from), and what is under test is the ledger's end state.
    """
    history, consumed, glitches = data.draw(histories_with_dips(), label="history")
    batches = data.draw(deliveries(history), label="batches")
    settle_after = data.draw(st.sets(st.integers(0, len(batches) - 1)), label="settle after batch")
    with transaction.atomic():
        meter = _make_meter(flat_tariff, "dips@example.com", Decimal("99999"))
        for number, batch in enumerate(batches):
            assert _send(meter, batch) == []
            if number in settle_after:
                _settle_before(meter, batch[0][0].replace(minute=0, second=0))

        assert billed_kwh(meter) == consumed
        assert _usage_by_hour(meter) == hourly_energy(history)
        stored_events = {
            e.timestamp: (e.kind, e.previous_kwh, e.new_kwh) for e in MeterEvent.objects.filter(meter=meter)
        }
        assert stored_events == dips(history)
        assert {t for t, (kind, _, _) in stored_events.items() if kind == "glitch"} == glitches
        transaction.set_rollback(True)


@PROPERTY
@given(history=histories_with_dips())
def test_in_order_readings_are_never_refused_after_a_dip(flat_tariff, history):
    """A meter within its max power is never blocked by a dip, one reading per request as meters send."""
    readings, consumed, _ = history
    with transaction.atomic():
        meter = _make_meter(flat_tariff, "in-order@example.com", MAX_KW)
        for moment, kwh in readings:
            assert _send(meter, [(moment, kwh)]) == [], (moment, kwh)
        assert billed_kwh(meter) == consumed
        transaction.set_rollback(True)


def test_the_generator_makes_glitches_and_resets(flat_tariff):
    """The properties above see both kinds of dip (not only rises)."""
    seen = set()

    @settings(max_examples=60, deadline=None, database=None)
    @given(history=histories_with_dips())
    def collect(history):
        seen.update(kind for kind, _, _ in dips(history[0]).values())

    collect()
    assert seen == {"glitch", "reset"}
