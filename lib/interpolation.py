"""Spread the energy between readings over the UTC hours it spans. Framework-free.

The register is interpolated linearly between two readings and rounded to 6 places at each hour
boundary; an hour's energy is the difference of the register at its two ends. Differences
telescope, so an interval's hours add up to exactly its energy, and the result depends only on
the set of readings, never on the order they arrived in.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from lib.money import KWH_PLACES
from lib.periods import HOUR, floor_hour

Point = tuple[datetime, Decimal]  # (timestamp UTC, register kWh)
_MICROSECOND = timedelta(microseconds=1)


def interval_by_hour(start: Point, end: Point) -> Iterable[tuple[datetime, Decimal]]:
    """(hour, kWh) for each hour the interval from ``start`` to ``end`` overlaps.

    A register that went down is a reset: a new baseline and no consumption for the interval.
    """
    (t0, r0), (t1, r1) = start, end
    if r1 <= r0:
        return
    energy = r1 - r0
    span = (t1 - t0) // _MICROSECOND

    def register_at(moment: datetime) -> Decimal:
        if moment >= t1:
            return r1
        elapsed = (moment - t0) // _MICROSECOND
        return (r0 + energy * elapsed / span).quantize(KWH_PLACES, rounding=ROUND_HALF_EVEN)

    hour = floor_hour(t0)
    lower = r0
    while hour < t1:
        upper = register_at(hour + HOUR)
        if upper != lower:
            yield hour, upper - lower
        lower = upper
        hour += HOUR


def hourly_energy(points: Sequence[Point]) -> dict[datetime, Decimal]:
    """kWh per hour from readings sorted by time with unique timestamps."""
    hours: defaultdict[datetime, Decimal] = defaultdict(Decimal)
    for start, end in itertools.pairwise(points):
        for hour, kwh in interval_by_hour(start, end):
            hours[hour] += kwh
    return dict(hours)


def energy_delta(before: Sequence[Point], after: Sequence[Point]) -> dict[datetime, Decimal]:
    """kWh to add per hour when the readings of a window change from ``before`` to ``after``.

    Both sequences cover the same window (they share its first and last reading, or the window is
    open-ended where the meter has nothing further). Unchanged intervals cancel exactly.
    """
    delta = hourly_energy(after)
    for hour, kwh in hourly_energy(before).items():
        delta[hour] = delta.get(hour, Decimal("0")) - kwh
    return {hour: kwh for hour, kwh in delta.items() if kwh}
