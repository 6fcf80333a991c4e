"""Hourly usage depends on the set of readings only: not on arrival order, repetition or batching.

Each example builds a meter's true register history, then feeds it to ingest shuffled, repeated and
in random batches, sometimes settling hours in between, and compares with the sorted unique stream.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from energypay.accounts.models import User
from lib.interpolation import billing_points, hourly_energy
from lib.money import cost_of
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Household, Meter, Tariff
from meters.schema import ReadingIn

START = datetime(2026, 3, 28, 20, 7, tzinfo=UTC)  # runs across Madrid's 23-hour day
RATE = Decimal("0.25")
MAX_KW = Decimal("40")


@st.composite
def register_histories(draw) -> list[tuple[datetime, Decimal]]:
    """A meter's true readings: increasing times, a register that grows within max power or resets."""
    count = draw(st.integers(min_value=2, max_value=25))
    moment, register = START, Decimal(draw(st.integers(0, 10**6))) / 1000
    history = [(moment, register)]
    for _ in range(count - 1):
        seconds = draw(st.integers(min_value=1, max_value=6 * 3600))
        moment += timedelta(seconds=seconds)
        if register > 0 and draw(st.integers(0, 12)) == 0:
            lower = min(5000, int(register * 1000) - 1)
            register = Decimal(draw(st.integers(0, lower))) / 1000  # a reset: a new, lower baseline
        else:
            most = int(MAX_KW * seconds * 1000 / 3600)  # thousandths of a kWh at max power
            register += Decimal(draw(st.integers(0, most))) / 1000
        history.append((moment, register))
    return history


@st.composite
def deliveries(draw, history) -> list[list[tuple[datetime, Decimal]]]:
    """The history shuffled, with repeats, cut into batches."""
    extra = draw(st.lists(st.sampled_from(history), max_size=len(history)))
    arrivals = draw(st.permutations(history + extra))
    batches, rest = [], arrivals
    while rest:
        size = draw(st.integers(min_value=1, max_value=len(rest)))
        batches.append(rest[:size])
        rest = rest[size:]
    return batches


def _make_meter(tariff: Tariff, email: str) -> Meter:
    user = User.objects.create_user(email)
    household = Household.objects.create(user=user, name=email, timezone="Europe/Madrid", tariff=tariff)
    return Meter.objects.create(serial=email, household=household, max_power_kw=MAX_KW)


def _send(meter: Meter, batch) -> None:
    items = [(i, ReadingIn(timestamp=t, energy_kwh=kwh)) for i, (t, kwh) in enumerate(batch)]
    outcome = ingest_readings(meter.pk, items, timezone.now())
    assert outcome.rejected == [], outcome.rejected


def _usage_by_hour(meter: Meter) -> dict[datetime, tuple[Decimal, Decimal]]:
    totals: defaultdict[datetime, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for line in HourlyUsage.objects.filter(meter=meter):
        totals[line.hour_start][0] += line.kwh
        totals[line.hour_start][1] += line.cost_eur
    return {hour: (kwh, eur) for hour, (kwh, eur) in totals.items() if kwh or eur}


def _settle_before(meter: Meter, hour: datetime) -> None:
    """What settlement does to usage: freeze every open line before ``hour``."""
    HourlyUsage.objects.filter(meter=meter, hour_start__lt=hour, settled_at__isnull=True).update(
        settled_at=timezone.now()
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_usage_is_the_same_whatever_the_order_repetition_and_settlements(flat_tariff, data):
    history = data.draw(register_histories(), label="history")
    batches = data.draw(deliveries(history), label="batches")
    settle_after = data.draw(st.sets(st.integers(0, len(batches) - 1)), label="settle after batch")
    with transaction.atomic():
        sorted_meter = _make_meter(flat_tariff, "sorted@example.com")
        shuffled_meter = _make_meter(flat_tariff, "shuffled@example.com")
        _send(sorted_meter, history)

        frozen = {}
        for number, batch in enumerate(batches):
            _send(shuffled_meter, batch)
            if number in settle_after:
                cut = batch[0][0].replace(minute=0, second=0)
                _settle_before(shuffled_meter, cut)
                frozen.update(
                    {
                        line.pk: (line.kwh, line.cost_eur)
                        for line in shuffled_meter.usage.filter(settled_at__isnull=False)
                    }
                )

        expected = {hour: (kwh, cost_of(kwh, RATE)) for hour, kwh in hourly_energy(history).items()}
        assert _usage_by_hour(sorted_meter) == expected
        assert _usage_by_hour(shuffled_meter) == expected
        # Settled lines never changed; later readings went into adjustment lines.
        assert {line.pk: (line.kwh, line.cost_eur) for line in HourlyUsage.objects.filter(pk__in=frozen)} == frozen
        # No energy lost or invented: the hours add up to the register's rises, resets aside, and a
        # one-off dip (a glitch) left out: 5, 0, 5.001 bills 0.001, not 5.001 (tests/meters/test_register_dips.py).
        billed = billing_points(history)
        rises = sum((b - a for (_, a), (_, b) in itertools.pairwise(billed) if b > a), Decimal(0))
        assert sum(kwh for kwh, _ in expected.values()) == rises
        assert HourlyUsage.objects.filter(meter=shuffled_meter, kwh__lt=0, settled_at__isnull=True, seq=0).count() == 0
        transaction.set_rollback(True)
