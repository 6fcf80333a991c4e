"""Add a meter's readings and bring its hourly usage up to date, in one transaction."""

from __future__ import annotations

import bisect
import itertools
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Subquery, Value
from django.db.models.functions import Coalesce

from lib.interpolation import Point, billing_points, dips, energy_delta
from lib.periods import ceil_hour, floor_hour
from meters.audit import record_action
from meters.hooks import usage_changed
from meters.models import HeldReading, Meter, MeterEvent, Reading
from meters.reasons import rejection
from meters.schema import Checked, ReadingIn
from meters.usage import record_energy

log = logging.getLogger(__name__)
_HOUR_SECONDS = Decimal(3600)
_KWH_TO_KW_MICROSECONDS = 3600 * 1_000_000
_MICROSECOND = timedelta(microseconds=1)
_COPY_FROM = 50  # readings; below this a plain INSERT is as fast
# Stored readings kept on each side of a batch: a new reading can change whether its neighbours are
# dips, glitches or resets (lib/interpolation.py), and those intervals must be seen whole.
_MARGIN = 3
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class Outcome:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict] = field(default_factory=list)

    def reject(self, index: int, code: str, **params: object) -> None:
        self.rejected.append(rejection(index, code, **params))

    def resent(self, index: int, kwh: Decimal, stored_kwh: Decimal) -> None:
        """A reading for a moment already stored: a duplicate when the value matches, else a conflict."""
        if stored_kwh == kwh:
            self.duplicates += 1
        else:
            self.reject(index, "reading.conflict", stored=stored_kwh)

    def as_json(self) -> dict:
        return {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": sorted(self.rejected, key=lambda r: r["index"]),
        }


def ingest_readings(meter_id: int, items: list[tuple[int, Checked]], now: datetime, *, trusted: bool = True) -> Outcome:
    """Lock the meter and ingest ``items`` for it (for callers that hold no lock).

    Python callers (seed_demo, staff accepting a held reading) are trusted by default: no billing
    window applies. A meter's token only ever reaches ingest through meters/api.py, never trusted.
    """
    with transaction.atomic():
        return ingest_locked(Meter.locked(meter_id), items, now, trusted=trusted)


def ingest_locked(
    meter: Meter, items: list[tuple[int, Checked]], now: datetime, *, trusted: bool, heard: bool = True
) -> Outcome:
    """Judge each reading against the clock and the meter's others, store the good ones, update usage.

    The caller holds the meter's row lock in a transaction, so one meter's requests never
    interleave. Steps:
    1. the reading's time: refuse it if ahead of the clock or out of the meter's range; unless
       ``trusted``, hold it for staff if it is older than the billing window (docs/ingest.md);
    2. load the stored readings around the batch (one query, or none for an in-order append);
    3. per reading, in time order: duplicate, conflict, implausible power, or accepted;
    4. insert accepted readings, and record dips (resets and glitches) as events staff can see;
    5. add the energy the new intervals imply, minus the intervals they replace, to hourly usage;
    6. save the meter's latest two readings and, when the meter itself sent them (``heard``), its
       last contact and request budget: staff accepting a held reading must not make a silent meter
       look alive to the alarms and the status page.
    """
    outcome = Outcome()
    candidates, old = _screen(meter, items, now, trusted, outcome)
    if old:
        _hold(meter, old, now, outcome)
    latest = {}
    if candidates:
        before = _stored_window(meter, candidates[0][0], candidates[-1][0])
        after = _judge(meter, before, candidates, outcome)
        if len(after) > len(before):
            _store(meter, before, after, now, received_at=None if trusted else now)
            if meter.last_reading_at is None or after[-1][0] >= meter.last_reading_at:
                # The window reaches the meter's latest reading: remember the last two.
                previous = after[-2] if len(after) > 1 else (None, None)
                latest = {
                    "last_reading_at": after[-1][0],
                    "last_register_kwh": after[-1][1],
                    "previous_reading_at": previous[0],
                    "previous_register_kwh": previous[1],
                }
    if heard:
        meter.save_contact(now, **latest)
    elif latest:
        Meter.objects.filter(pk=meter.pk).update(**latest)
    return outcome


Candidate = tuple[datetime, int, Decimal]  # (timestamp UTC, index in the request, register kWh)


def billing_window(now: datetime) -> tuple[datetime, datetime]:
    """(billed from, latest allowed): what a meter's token may bill at ``now``, from the window's start
    (older readings are held for staff) to the clock plus its tolerance (later ones are refused)."""
    return now - timedelta(days=settings.INGEST_BACKFILL_DAYS), now + settings.INGEST_FUTURE_TOLERANCE


def _screen(
    meter: Meter, items: list[tuple[int, Checked]], now: datetime, trusted: bool, outcome: Outcome
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """Split readings by time, before any arithmetic on it: (billable candidates sorted, (old, code) to hold).

    Only comparisons here: they hold for any datetime, where adding or flooring near year 1 or 9999
    overflows, and spreading a reading from years away over hours takes a worker for minutes.
    """
    billed_from, latest_allowed = billing_window(now)
    backfill = timedelta(days=settings.INGEST_BACKFILL_DAYS)
    # (An installation day staff typed within the window of year 1 would overflow the subtraction.)
    earliest_allowed = meter.installed_at - min(backfill, meter.installed_at - _EARLIEST)
    candidates, old = [], []
    for index, reading in items:
        timestamp = reading.utc_timestamp
        candidate = (timestamp, index, reading.register_kwh)
        if timestamp > latest_allowed:
            outcome.reject(index, "reading.future")
        elif trusted:
            candidates.append(candidate)
        elif timestamp < earliest_allowed:
            outcome.reject(index, "reading.out_of_range")
        elif timestamp < meter.installed_at:
            old.append((candidate, "reading.before_installation"))
        elif timestamp < billed_from:
            old.append((candidate, "reading.too_old"))
        else:
            candidates.append(candidate)
    candidates.sort()
    return candidates, old


def _hold(meter: Meter, old: list[tuple[Candidate, str]], now: datetime, outcome: Outcome) -> None:
    """Keep readings too old to bill for staff review; one already stored is a duplicate or a conflict.

    Meters resend old batches: what was accepted back then must still answer as a duplicate.
    """
    stored = dict(
        Reading.objects.filter(meter=meter, timestamp__in=[t for (t, _, _), _ in old]).values_list(
            "timestamp", "energy_kwh"
        )
    )
    held = []
    for (timestamp, index, kwh), code in old:
        if timestamp in stored:
            outcome.resent(index, kwh, stored[timestamp])
            continue
        outcome.reject(index, code, installed=f"{meter.installed_at:%Y-%m-%d %H:%M}")
        held.append(HeldReading(meter=meter, timestamp=timestamp, energy_kwh=kwh, reason=code, received_at=now))
    if held:
        HeldReading.objects.bulk_create(held, ignore_conflicts=True)
        log.warning("readings_held meter=%s count=%d", meter.pk, len(held))


def _stored_window(meter: Meter, first: datetime, last: datetime) -> list[Point]:
    """Stored readings from the _MARGIN-th before ``first`` to the _MARGIN-th after ``last``, sorted."""
    if meter.last_reading_at is not None and meter.last_reading_at < first:
        # The usual case, a meter reporting in order: the window is its latest reading, and the one
        # before it when the latest is a dip (whether it was a glitch depends on the next reading).
        latest = (meter.last_reading_at, meter.last_register_kwh)
        if meter.previous_reading_at is not None and meter.last_register_kwh < meter.previous_register_kwh:
            return [(meter.previous_reading_at, meter.previous_register_kwh), latest]
        return [latest]
    readings = Reading.objects.filter(meter=meter)
    earlier = readings.filter(timestamp__lt=first).values("timestamp")
    later = readings.filter(timestamp__gt=last).values("timestamp")
    # The _MARGIN-th neighbour, or the farthest one when there are fewer.
    lower = Coalesce(
        Subquery(earlier.order_by("-timestamp")[_MARGIN - 1 : _MARGIN]),
        Subquery(earlier.order_by("timestamp")[:1]),
        Value(first),
    )
    upper = Coalesce(
        Subquery(later.order_by("timestamp")[_MARGIN - 1 : _MARGIN]),
        Subquery(later.order_by("-timestamp")[:1]),
        Value(last),
    )
    window = readings.filter(timestamp__gte=lower, timestamp__lte=upper)
    return list(window.order_by("timestamp").values_list("timestamp", "energy_kwh"))


def _judge(meter: Meter, before: list[Point], candidates: list[Candidate], outcome: Outcome) -> list[Point]:
    points = list(before)
    values = dict(before)
    for timestamp, index, kwh in candidates:
        last = points[-1] if points else None
        if last and timestamp > last[0] and kwh >= last[1] and (len(points) < 2 or last[1] >= points[-2][1]):
            # Most of a batch: after the last point, the register not down, the last point no dip. The
            # one interval it creates is from the last point (what _implausible checks in this case).
            new = (timestamp, kwh)
            too_much = _over_max_power(meter, last, new, new)
            if too_much:
                outcome.reject(index, "reading.max_power", **too_much)
                continue
            points.append(new)
            values[timestamp] = kwh
            outcome.accepted += 1
            continue
        if timestamp in values:
            outcome.resent(index, kwh, values[timestamp])
            continue
        # Candidates come sorted, so most land after the last point: no search.
        later = not points or timestamp > points[-1][0]
        position = len(points) if later else bisect.bisect_left(points, (timestamp,))
        too_much = _implausible(meter, points, position, (timestamp, kwh))
        if too_much:
            outcome.reject(index, "reading.max_power", **too_much)
            continue
        points.insert(position, (timestamp, kwh))
        values[timestamp] = kwh
        outcome.accepted += 1
    return points


def _implausible(meter: Meter, points: list[Point], position: int, new: Point) -> dict | None:
    """Why inserting ``new`` would bill more power than the meter can draw, or None.

    Only intervals the insertion creates are checked (between billing readings, so around a
    glitch, from the reading before it): a stored interval is never held against a new reading.
    """
    appended = position == len(points) and points and new[1] >= points[-1][1]
    if appended and (len(points) < 2 or points[-1][1] >= points[-2][1]):
        # The common case, in order with the register rising after a reading that is no dip: the one
        # interval it creates is from the last reading (most of a 1,000-reading batch).
        return _over_max_power(meter, points[-1], new, new)
    lo, hi = max(0, position - _MARGIN), min(len(points), position + _MARGIN)
    old_slice = points[lo:hi]
    new_slice = [*points[lo:position], new, *points[position:hi]]
    existing = set(itertools.pairwise(billing_points(old_slice)))
    for start, end in itertools.pairwise(billing_points(new_slice)):
        if (start, end) not in existing and (too_much := _over_max_power(meter, start, end, new)):
            return too_much
    return None


def _over_max_power(meter: Meter, start: Point, end: Point, new: Point) -> dict | None:
    (t0, r0), (t1, r1) = start, end
    if r1 <= r0:
        return None  # no consumption, or a reset: never a power problem
    micros = (t1 - t0) // _MICROSECOND
    # kWh * 3600 s/h * 10^6 us/s against kW * us: exact, and no division for the readings that pass
    # (the fast path's function compares the same way).
    if (r1 - r0) * _KWH_TO_KW_MICROSECONDS <= meter.max_power_kw * micros:
        return None
    power = (r1 - r0) * _HOUR_SECONDS / (Decimal(micros) / 1_000_000)
    where = "since the previous reading" if t1 <= new[0] else "until the next reading"
    return {"power": f"{power:.3f}", "where": where, "maximum": f"{meter.max_power_kw.normalize():f}"}


def _store(
    meter: Meter, before: list[Point], after: list[Point], now: datetime, *, received_at: datetime | None
) -> None:
    stored = {timestamp for timestamp, _ in before}
    new = [(timestamp, kwh) for timestamp, kwh in after if timestamp not in stored]
    _insert_readings(meter, new, received_at)
    _record_dips(meter, dips(before), dips(after))
    record_energy(
        meter,
        meter.household,
        energy_delta(before, after),
        floor_hour(after[0][0]),
        ceil_hour(after[-1][0]),
    )


def _record_dips(meter: Meter, before: dict, after: dict) -> None:
    """Bring the meter's dip events in step with the window: a new reading may turn a dip into a glitch."""
    changed = {timestamp for timestamp in before.keys() | after.keys() if before.get(timestamp) != after.get(timestamp)}
    if not changed:
        return
    kinds = [MeterEvent.Kind.RESET, MeterEvent.Kind.GLITCH]
    MeterEvent.objects.filter(meter=meter, kind__in=kinds, timestamp__in=changed).delete()
    events = [
        MeterEvent(meter=meter, kind=kind, timestamp=timestamp, previous_kwh=previous, new_kwh=new)
        for timestamp, (kind, previous, new) in after.items()
        if timestamp in changed
    ]
    MeterEvent.objects.bulk_create(events)
    if events:
        log.warning("meter_dips meter=%s %s", meter.pk, ",".join(sorted(event.kind for event in events)))


def _insert_readings(meter: Meter, points: list[Point], received_at: datetime | None) -> None:
    """Store judged readings; ``received_at`` is the API's clock, None for a trusted caller's (Reading)."""
    if connection.vendor == "postgresql" and len(points) >= _COPY_FROM:
        # COPY costs a quarter of what the ORM's INSERT does for a batch (building 1,000 model
        # objects and SQL text); the readings were judged under the meter lock, and the unique
        # constraint still stands behind it. The text is built here in one piece: ids, ISO 8601
        # times and plain decimals need no escaping, and psycopg's write_row() per row cost three
        # times as much.
        columns = "meter_id, household_id, timestamp, energy_kwh, received_at"
        received = received_at.isoformat() if received_at else "\\N"  # COPY's NULL
        prefix, suffix = f"{meter.pk}\t{meter.household_id}\t", f"\t{received}\n"
        text = "".join(f"{prefix}{timestamp.isoformat()}\t{kwh:f}{suffix}" for timestamp, kwh in points)
        with (
            connection.cursor() as cursor,
            cursor.cursor.copy(f"COPY {Reading._meta.db_table} ({columns}) FROM STDIN") as copy,
        ):
            copy.write(text)
    else:
        Reading.objects.bulk_create(
            Reading(
                meter=meter,
                household_id=meter.household_id,
                timestamp=timestamp,
                energy_kwh=kwh,
                received_at=received_at,
            )
            for timestamp, kwh in points
        )


def accept_held(held_id: int, *, acting_user, now: datetime) -> str:
    """Staff bill a held reading: it goes through the normal path, only the billing window is waived.

    Lock order (meters/models.py): the meter, then the held row. A reading the normal path still
    refuses (a conflict, implausible power) stays held, and the refusal is written on it.
    Returns what happened, for the person who asked.
    """
    meter_id = HeldReading.objects.values_list("meter_id", flat=True).get(pk=held_id)
    with transaction.atomic():
        meter = Meter.locked(meter_id)
        held = HeldReading.objects.select_for_update().get(pk=held_id)
        if held.state != HeldReading.State.HELD:
            return f"{held}: already {held.get_state_display().lower()}, nothing done"
        reading = ReadingIn(timestamp=held.timestamp, energy_kwh=held.energy_kwh)
        outcome = ingest_locked(meter, [(0, reading)], now, trusted=True, heard=False)
        if outcome.rejected:
            held.outcome = f"accept refused at {now:%Y-%m-%d %H:%M} UTC: {outcome.rejected[0]['error']}"
            held.save(update_fields=["outcome"])
            return f"{held}: not accepted, {outcome.rejected[0]['error']}"
        held.outcome = "accepted and billed" if outcome.accepted else "accepted: the same reading was already stored"
        _decide(held, HeldReading.State.ACCEPTED, acting_user, now)
        if outcome.accepted:
            usage_changed(meter.household_id)  # alarms re-check what the billed reading changed
    log.warning("held_reading_accepted id=%s meter=%s by=%s", held.pk, meter.pk, acting_user.pk)
    return f"{held}: {held.outcome}"


def discard_held(held_id: int, *, acting_user, now: datetime) -> str:
    """Staff decide a held reading is not billed: the row stays, marked discarded, with who and when."""
    with transaction.atomic():
        held = HeldReading.objects.select_for_update().get(pk=held_id)
        if held.state != HeldReading.State.HELD:
            return f"{held}: already {held.get_state_display().lower()}, nothing done"
        held.outcome = "discarded, not billed"
        _decide(held, HeldReading.State.DISCARDED, acting_user, now)
    return f"{held}: {held.outcome}"


def _decide(held: HeldReading, state: str, acting_user, now: datetime) -> None:
    """Record the decision on the row, and in the audit trail in the same transaction."""
    held.state, held.decided_by, held.decided_at = state, acting_user, now
    held.save(update_fields=["state", "decided_by", "decided_at", "outcome"])
    record_action(held, f"reading.{state}", held.outcome, actor=acting_user, meter_id=held.meter_id)
