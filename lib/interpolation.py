"""Spread the energy between readings over the UTC hours it spans. Framework-free.

The register is interpolated linearly between two readings and rounded to 6 places at each hour
boundary; an hour's energy is the difference of the register at its two ends. Differences
telescope, so an interval's hours add up to exactly its energy, and the result depends only on
the set of readings, never on the order they arrived in.

A register dip (a reading below the one before it) is one of two things, decided by its neighbours
only (docs/ingest.md, "Register dips"):
- a glitch, when the reading after it is back at or above the register before the dip: the dip is
  left out of billing, so the energy runs from the reading before it to the one after it;
- otherwise a reset: a new baseline, no consumption for the interval that goes down.
Two dips in a row cannot both be glitches (the second is not a dip against the first's
predecessor), so the rule is local: inserting a reading changes the status of its neighbours only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from lib.money import KWH_PLACES
from lib.periods import HOUR, floor_hour

Point = tuple[datetime, Decimal]  # (timestamp UTC, register kWh)
_MICROSECOND = timedelta(microseconds=1)
_ZERO = Decimal("0")


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


def is_glitch(points: Sequence[Point], k: int) -> bool:
    """Whether reading ``k`` is a one-off dip: below the reading before it, which the next one reaches again."""
    if k <= 0 or k + 1 >= len(points):
        return False
    return points[k][1] < points[k - 1][1] <= points[k + 1][1]


def billing_points(points: Sequence[Point]) -> list[Point]:
    """The readings that bill, in order: every reading but the glitches (``is_glitch``, inlined: a
    batch of 1,000 readings asks it 1,000 times)."""
    last = len(points) - 1
    return [
        point
        for k, point in enumerate(points)
        if not (0 < k < last and points[k][1] < points[k - 1][1] <= points[k + 1][1])
    ]


def dips(points: Sequence[Point]) -> dict[datetime, tuple[str, Decimal, Decimal]]:
    """timestamp -> ("reset" or "glitch", register before, register at the dip) for every dip."""
    return {
        points[k][0]: ("glitch" if is_glitch(points, k) else "reset", points[k - 1][1], points[k][1])
        for k in range(1, len(points))
        if points[k][1] < points[k - 1][1]
    }


def hourly_energy(points: Sequence[Point]) -> dict[datetime, Decimal]:
    """kWh per hour from readings sorted by time with unique timestamps.

    What summing ``interval_by_hour`` over every interval gives, in fewer steps: most intervals lie
    inside one hour, where that is the register's rise, so consecutive ones are summed while they stay
    in their hour and only an interval over an hour boundary is interpolated. (Decimal sums of these
    few digits are exact, so the order of the additions changes nothing.)
    """
    hours: dict[datetime, Decimal] = {}
    hour = hour_end = None  # the hour being summed while the intervals stay inside it
    total = _ZERO
    for (t0, r0), (t1, r1) in itertools.pairwise(billing_points(points)):
        if hour is None or t0 < hour or t1 > hour_end:
            if total:
                hours[hour] = hours.get(hour, _ZERO) + total
            hour, total = floor_hour(t0), _ZERO
            hour_end = hour + HOUR
            if t1 > hour_end:
                for spread_hour, kwh in interval_by_hour((t0, r0), (t1, r1)):
                    hours[spread_hour] = hours.get(spread_hour, _ZERO) + kwh
                hour = None
                continue
        if r1 > r0:  # else no consumption, or a reset
            total += r1 - r0
    if total:
        hours[hour] = hours.get(hour, _ZERO) + total
    return hours


def energy_delta(before: Sequence[Point], after: Sequence[Point]) -> dict[datetime, Decimal]:
    """kWh to add per hour when the readings of a window change from ``before`` to ``after``.

    Both sequences cover the same window (they share its first and last reading, or the window is
    open-ended where the meter has nothing further). Unchanged intervals cancel exactly.
    """
    delta = hourly_energy(after)
    for hour, kwh in hourly_energy(before).items():
        delta[hour] = delta.get(hour, _ZERO) - kwh
    return {hour: kwh for hour, kwh in delta.items() if kwh}
