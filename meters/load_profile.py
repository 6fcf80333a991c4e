"""A household's electricity consumption per 15-minute slot, for demo data and the meter simulator.

Framework-free and deterministic: the same household index and slot always give the same energy,
so ``seed_demo`` and ``simulate_meters`` continue one another's registers seamlessly.

The shape follows a Spanish household (times are local, Spain eats late):
- a base load all day (fridge, router, standby);
- a morning peak around 07:30 on weekdays, later and broader (09:30) at weekends;
- lunch around 14:30, small on weekdays (people are out), bigger at weekends;
- the evening peak around 21:00 (cooking, lights, TV, washing);
- electric heating from October to April, strongest in January, following who is at home;
- some air conditioning on summer afternoons, far less than winter heating;
- occasional appliance runs (kettle, oven, washing machine) as random events.
Each household has its own size and heating; noise is seeded from the household index and slot.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from lib.periods import zone

SLOT = timedelta(minutes=15)
_SLOT_HOURS = SLOT / timedelta(hours=1)
BASE_KW = 0.15  # fridge, router, standby

# Share of the household's heating (or cooling) capacity in use, by calendar month.
_HEATING_BY_MONTH = {1: 1.0, 2: 0.85, 3: 0.55, 4: 0.25, 5: 0.05, 10: 0.15, 11: 0.6, 12: 0.95}
_COOLING_BY_MONTH = {6: 0.3, 7: 1.0, 8: 0.9, 9: 0.3}
# (power kW, share of the slot it runs): kettle, oven, washing machine, dishwasher.
_APPLIANCES = ((2.0, 0.15), (1.8, 0.8), (2.2, 0.6), (1.5, 0.7))


def floor_slot(moment: datetime) -> datetime:
    """The start of the UTC quarter hour containing ``moment``."""
    moment = moment.astimezone(UTC)
    return moment.replace(minute=moment.minute - moment.minute % 15, second=0, microsecond=0)


def _bump(hour: float, centre: float, width: float) -> float:
    """A bell curve over the hour of day, 1 at ``centre``, wrapping around midnight."""
    distance = abs(hour - centre)
    distance = min(distance, 24 - distance)
    return math.exp(-(distance * distance) / (2 * width * width))


class LoadProfile:
    """The consumption of household number ``index`` (1, 2, ...) living in time zone ``tz_name``."""

    def __init__(self, index: int, tz_name: str) -> None:
        self.index = index
        self.tz = zone(tz_name)
        traits = random.Random(index)  # demo data, not security
        self.scale = traits.uniform(0.55, 1.1)  # people and appliances in the home
        self.heating_kw = traits.uniform(0.25, 0.9)  # average draw of its heating in January
        self.cooling_kw = traits.uniform(0.1, 0.4)
        self.start_register = Decimal(f"{traits.uniform(1_500, 25_000):.3f}")

    def expected_kw(self, local: datetime) -> float:
        """Average power without noise at a local time: the shape described in the module docstring."""
        hour = local.hour + local.minute / 60
        weekend = local.weekday() >= 5
        if weekend:
            activity = 0.6 * _bump(hour, 9.5, 1.3) + 0.5 * _bump(hour, 14.5, 1.2) + 0.25 * _bump(hour, 17, 2.5)
            at_home = 0.25 + 0.75 * _bump(hour, 15, 6)
        else:
            activity = 0.55 * _bump(hour, 7.5, 0.8) + 0.2 * _bump(hour, 14.5, 1.0) + 0.1 * _bump(hour, 12, 3)
            at_home = 0.25 + 0.75 * max(_bump(hour, 7.5, 1.2), _bump(hour, 20.5, 2.5))
        activity += 1.0 * _bump(hour, 21, 1.5)
        # Thermostats are set back at night, hence at_home never below 0.25 but well under 1.
        heating = self.heating_kw * _HEATING_BY_MONTH.get(local.month, 0.0) * at_home
        cooling = self.cooling_kw * _COOLING_BY_MONTH.get(local.month, 0.0) * _bump(hour, 17, 3)
        return BASE_KW + self.scale * activity + heating + cooling

    def slot_kw(self, slot_start: datetime) -> float:
        """Average power over the UTC quarter hour starting at ``slot_start``, noise included."""
        slot_start = floor_slot(slot_start)
        local = (slot_start + SLOT / 2).astimezone(self.tz)
        slot_number = int(slot_start.timestamp()) // 900
        rng = random.Random((self.index << 40) | slot_number)
        base = BASE_KW * rng.uniform(0.9, 1.1)
        power = base + (self.expected_kw(local) - BASE_KW) * rng.lognormvariate(0, 0.25)
        if 7 <= local.hour < 23 and rng.random() < 0.05 * self.scale:
            kw, share = rng.choice(_APPLIANCES)
            power += kw * share
        return power

    def slot_kwh(self, slot_start: datetime) -> Decimal:
        return Decimal(f"{self.slot_kw(slot_start) * _SLOT_HOURS:.3f}")

    def register_at(self, after: datetime, register: Decimal, moment: datetime) -> Decimal:
        """The register at ``moment``, continuing ``register`` read at ``after``, both in one quarter hour.

        The part of the slot between them, at the slot's power: a reading between the quarter hours that
        the next quarter-hour reading (``readings`` from ``moment``) continues without a gap or overlap.
        """
        slot = floor_slot(moment)
        if not slot <= after <= moment:
            raise ValueError(f"{after} and {moment} are not in one quarter hour, in that order")
        return register + Decimal(f"{self.slot_kw(slot) * ((moment - after) / timedelta(hours=1)):.3f}")

    def readings(self, after: datetime, register: Decimal, until: datetime) -> list[tuple[datetime, Decimal]]:
        """Register values at each quarter hour t with ``after`` < t <= ``until``, continuing ``register``.

        When ``after`` is not on a quarter hour, the first reading carries only the part of its
        slot that follows ``after``.
        """
        readings = []
        moment = after.astimezone(UTC)
        boundary = floor_slot(moment) + SLOT
        while boundary <= until:
            slot = boundary - SLOT
            if moment == slot:
                kwh = self.slot_kwh(slot)
            else:
                kwh = Decimal(f"{self.slot_kw(slot) * ((boundary - moment) / timedelta(hours=1)):.3f}")
            register += kwh
            readings.append((boundary, register))
            moment = boundary
            boundary += SLOT
        return readings
