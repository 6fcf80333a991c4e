"""lib/interpolation.py: hourly energy summed the quick way is what spreading every interval gives."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from lib.interpolation import billing_points, hourly_energy, interval_by_hour

START = datetime(2026, 3, 29, 0, 13, tzinfo=UTC)


def spread_every_interval(points) -> dict[datetime, Decimal]:
    """The definition: each interval between billing readings spread over its hours, then summed."""
    hours: defaultdict[datetime, Decimal] = defaultdict(Decimal)
    for start, end in itertools.pairwise(billing_points(points)):
        for hour, kwh in interval_by_hour(start, end):
            hours[hour] += kwh
    return dict(hours)


@st.composite
def readings(draw) -> list[tuple[datetime, Decimal]]:
    """Sorted, unique times (mostly minutes apart, some on the hour, some hours apart), registers that
    rise, stay, dip back or reset."""
    moment, register, points = START, Decimal(draw(st.integers(0, 10**6))) / 1000, []
    for _ in range(draw(st.integers(0, 60))):
        step = draw(
            st.one_of(
                st.integers(1, 20 * 60).map(lambda s: timedelta(seconds=s)),
                st.integers(1, 10**9).map(lambda us: timedelta(microseconds=us)),
                st.integers(1, 30).map(lambda h: timedelta(hours=h)),
                st.just(None),  # to the next hour exactly
            )
        )
        if step is None:
            moment = moment.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        else:
            moment += step
        change = draw(st.integers(-3000, 20000))
        register = max(Decimal(0), register + Decimal(change) / 1000)
        points.append((moment, register))
    return points


@settings(max_examples=300, deadline=None)
@given(points=readings())
def test_hourly_energy_is_every_interval_spread_and_summed(points):
    assert hourly_energy(points) == spread_every_interval(points)
