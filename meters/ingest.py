"""Add a meter's readings and bring its hourly usage up to date, in one transaction."""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce

from lib.interpolation import Point, energy_delta
from lib.periods import ceil_hour, floor_hour
from meters.models import Meter, MeterEvent, Reading
from meters.schema import ReadingIn
from meters.usage import record_energy

log = logging.getLogger(__name__)
_HOUR_SECONDS = Decimal(3600)
_KWH = Decimal("0.001")
_TOO_FAR_AHEAD = (
    f"timestamp is more than {settings.INGEST_FUTURE_TOLERANCE.total_seconds() / 60:g} minutes in the future"
)
_COPY_FROM = 50  # readings; below this a plain INSERT is as fast


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": sorted(self.rejected, key=lambda r: r["index"]),
        }


def ingest_readings(meter_id: int, items: list[tuple[int, ReadingIn]], now: datetime) -> Outcome:
    """Lock the meter and ingest ``items`` for it (for callers that hold no lock, e.g. seed_demo)."""
    with transaction.atomic():
        return ingest_locked(Meter.locked(meter_id), items, now)


def ingest_locked(meter: Meter, items: list[tuple[int, ReadingIn]], now: datetime) -> Outcome:
    """Judge each reading against the meter's others, store the good ones, update usage.

    The caller holds the meter's row lock in a transaction, so one meter's requests never
    interleave. Steps:
    1. load the stored readings around the batch (one query, or none for an in-order append);
    2. per reading, in time order: duplicate, conflict, future, implausible power, or accepted;
    3. insert accepted readings and any register resets as events staff can see;
    4. add the energy the new intervals imply, minus the intervals they split, to hourly usage;
    5. save the meter's last contact, request budget and latest reading.
    """
    outcome = Outcome()
    candidates = []
    latest_allowed = now + settings.INGEST_FUTURE_TOLERANCE
    for index, reading in items:
        timestamp = reading.utc_timestamp
        if timestamp > latest_allowed:
            outcome.rejected.append({"index": index, "error": _TOO_FAR_AHEAD})
        else:
            candidates.append((timestamp, index, reading.energy_kwh.quantize(_KWH)))
    candidates.sort()

    latest = {}
    if candidates:
        before = _stored_window(meter, candidates[0][0], candidates[-1][0])
        after = _judge(meter, before, candidates, outcome)
        if len(after) > len(before):
            _store(meter, before, after, now)
            if meter.last_reading_at is None or after[-1][0] > meter.last_reading_at:
                latest = {"last_reading_at": after[-1][0], "last_register_kwh": after[-1][1]}
    meter.save_contact(now, **latest)
    return outcome


def _stored_window(meter: Meter, first: datetime, last: datetime) -> list[Point]:
    """Stored readings from the one before ``first`` to the one after ``last``, sorted."""
    if meter.last_reading_at is not None and meter.last_reading_at < first:
        # The usual case, a meter reporting in order: the window is just its latest reading.
        return [(meter.last_reading_at, meter.last_register_kwh)]
    readings = Reading.objects.filter(meter=meter)
    previous = readings.filter(timestamp__lt=first).order_by("-timestamp").values("timestamp")[:1]
    following = readings.filter(timestamp__gt=last).order_by("timestamp").values("timestamp")[:1]
    window = readings.filter(
        timestamp__gte=Coalesce(Subquery(previous), Value(first)),
        timestamp__lte=Coalesce(Subquery(following), Value(last)),
    )
    return list(window.order_by("timestamp").values_list("timestamp", "energy_kwh"))


def _judge(meter: Meter, before: list[Point], candidates, outcome: Outcome) -> list[Point]:
    times = [timestamp for timestamp, _ in before]
    values = dict(before)
    for timestamp, index, kwh in candidates:
        if timestamp in values:
            if values[timestamp] == kwh:
                outcome.duplicates += 1
            else:
                outcome.rejected.append(
                    {
                        "index": index,
                        "error": f"conflicts with the stored reading of {values[timestamp]} kWh at this timestamp",
                    }
                )
            continue
        position = bisect.bisect_left(times, timestamp)
        error = None
        if position > 0:
            error = _implausible(meter, times[position - 1], values[times[position - 1]], timestamp, kwh, "previous")
        if error is None and position < len(times):
            error = _implausible(meter, timestamp, kwh, times[position], values[times[position]], "next")
        if error:
            outcome.rejected.append({"index": index, "error": error})
            continue
        times.insert(position, timestamp)
        values[timestamp] = kwh
        outcome.accepted += 1
    return [(timestamp, values[timestamp]) for timestamp in times]


def _implausible(meter: Meter, t0: datetime, r0: Decimal, t1: datetime, r1: Decimal, neighbour: str) -> str | None:
    if r1 <= r0:
        return None  # no consumption, or a reset: never a power problem
    seconds = Decimal((t1 - t0) // timedelta(microseconds=1)) / 1_000_000
    power = (r1 - r0) * _HOUR_SECONDS / seconds
    if power <= meter.max_power_kw:
        return None
    where = "since the previous reading" if neighbour == "previous" else "until the next reading"
    return f"implies {power:.3f} kW {where}, above this meter's maximum of {meter.max_power_kw.normalize():f} kW"


def _store(meter: Meter, before: list[Point], after: list[Point], now: datetime) -> None:
    stored = {timestamp for timestamp, _ in before}
    new = [(timestamp, kwh) for timestamp, kwh in after if timestamp not in stored]
    _insert_readings(meter, new, now)
    resets = [
        MeterEvent(meter=meter, kind=MeterEvent.Kind.RESET, timestamp=t1, previous_kwh=r0, new_kwh=r1)
        for (t0, r0), (t1, r1) in itertools.pairwise(after)
        if r1 < r0 and (t0 not in stored or t1 not in stored)
    ]
    if resets:
        MeterEvent.objects.bulk_create(resets, ignore_conflicts=True)
        log.warning("meter_reset meter=%s count=%d", meter.pk, len(resets))
    record_energy(
        meter,
        meter.household,
        energy_delta(before, after),
        floor_hour(after[0][0]),
        ceil_hour(after[-1][0]),
    )


def _insert_readings(meter: Meter, points: list[Point], now: datetime) -> None:
    if connection.vendor == "postgresql" and len(points) >= _COPY_FROM:
        # COPY costs a quarter of what the ORM's INSERT does for a batch (building 1,000 model
        # objects and SQL text); the readings were judged under the meter lock, and the unique
        # constraint still stands behind it.
        columns = "meter_id, timestamp, energy_kwh, received_at"
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {Reading._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            for timestamp, kwh in points:
                copy.write_row((meter.pk, timestamp, kwh, now))
    else:
        Reading.objects.bulk_create(
            Reading(meter=meter, timestamp=timestamp, energy_kwh=kwh, received_at=now) for timestamp, kwh in points
        )
