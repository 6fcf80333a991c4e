"""Which tariff version and rate price a UTC hour, in the household's local time."""

from __future__ import annotations

import bisect
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from lib.money import EUR_PLACES, round_eur
from lib.periods import HOUR, local_day_bounds, zone
from meters.models import DynamicPrice, Tariff, TariffVersion


@dataclass(frozen=True)
class Band:
    days: frozenset[int]
    start: int
    end: int
    rate: Decimal


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# What the rate columns (max_digits=9, decimal_places=6) can hold: a rate outside them would be
# rounded by the database (the stored rate then disagrees with the cost) or make the insert fail.
MAX_RATE = Decimal("999.999999")


def parse_rate(value: object) -> Decimal:
    """A EUR/kWh rate as the database stores it, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError("must be a decimal number of EUR/kWh")
    try:
        # str() of a JSON number gives back the digits staff typed (0.3 stays 0.3, not its binary value).
        rate = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("must be a decimal number of EUR/kWh") from None
    if not rate.is_finite() or rate < 0 or rate > MAX_RATE:
        raise ValueError(f"must be between 0 and {MAX_RATE} EUR/kWh")
    if rate != rate.quantize(EUR_PLACES):
        raise ValueError("must have at most 6 decimal places")
    return rate


def parse_bands(raw: object) -> list[Band]:
    """Validate time-of-use bands: local hours, Monday=0, every (weekday, hour) covered once."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("Time-of-use bands must be a non-empty list.")
    bands = []
    covered: dict[tuple[int, int], int] = {}
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or set(item) != {"days", "start", "end", "rate"}:
            raise ValueError(f"Band {number} must have exactly days, start, end and rate.")
        days, start, end = item["days"], item["start"], item["end"]
        if not isinstance(days, list) or not days or not all(type(d) is int and 0 <= d <= 6 for d in days):
            raise ValueError(f"Band {number}: days must be weekday numbers 0 (Monday) to 6 (Sunday).")
        if len(set(days)) != len(days):
            raise ValueError(f"Band {number}: days lists a weekday twice.")
        if not (type(start) is int and type(end) is int and 0 <= start < end <= 24):
            raise ValueError(f"Band {number}: start and end must be whole hours with 0 <= start < end <= 24.")
        try:
            rate = parse_rate(item["rate"])
        except ValueError as error:
            raise ValueError(f"Band {number}: rate {error}.") from None
        for day in days:
            for hour in range(start, end):
                if (day, hour) in covered:
                    raise ValueError(
                        f"Bands {covered[day, hour]} and {number} both cover {WEEKDAYS[day]} ({day}) "
                        f"{hour:02d}:00-{hour + 1:02d}:00."
                    )
                covered[day, hour] = number
        bands.append(Band(frozenset(days), start, end, rate))
    if len(covered) != 7 * 24:
        day, hour = next((d, h) for d in range(7) for h in range(24) if (d, h) not in covered)
        raise ValueError(f"No band covers {WEEKDAYS[day]} ({day}) {hour:02d}:00-{hour + 1:02d}:00.")
    return bands


# Versions per tariff, valid while the tariff's revision is unchanged. Per process, small (one
# entry per tariff), and exact: the revision is read in the same query that locks the meter.
_versions: dict[tuple[int, uuid.UUID], tuple[list[TariffVersion], dict[int, list[Band]]]] = {}


def _tariff_versions(tariff: Tariff) -> tuple[list[TariffVersion], dict[int, list[Band]]]:
    key = (tariff.pk, tariff.revision)
    if key not in _versions:
        versions = list(TariffVersion.objects.filter(tariff_id=tariff.pk).order_by("valid_from"))
        bands = {v.pk: parse_bands(v.bands) for v in versions if v.kind == TariffVersion.Kind.TIME_OF_USE}
        if len(_versions) > 1000:
            _versions.clear()
        _versions[key] = (versions, bands)
    return _versions[key]


class TariffSchedule:
    """The versions of one tariff in force over [start, end): cached, plus one query for dynamic prices."""

    def __init__(self, tariff: Tariff, tz_name: str, start: datetime, end: datetime) -> None:
        self.tz_name = tz_name
        self._versions, self._bands = _tariff_versions(tariff)
        self._starts = [v.valid_from for v in self._versions]
        first = max(0, bisect.bisect_right(self._starts, start) - 1)
        last = bisect.bisect_left(self._starts, end)
        dynamic = [v.pk for v in self._versions[first:last] if v.kind == TariffVersion.Kind.DYNAMIC]
        self._prices: dict[tuple[int, datetime], Decimal] = {}
        if dynamic:
            prices = DynamicPrice.objects.filter(version_id__in=dynamic, hour_start__gte=start, hour_start__lt=end)
            self._prices = {(p.version_id, p.hour_start): p.rate for p in prices}

    def version_at(self, hour: datetime) -> TariffVersion | None:
        index = bisect.bisect_right(self._starts, hour) - 1
        return self._versions[index] if index >= 0 else None

    def energy_rate(self, hour: datetime) -> tuple[TariffVersion | None, Decimal | None]:
        """The version and EUR/kWh rate for a UTC hour; rate None when no price is known (yet)."""
        version = self.version_at(hour)
        if version is None:
            return None, None
        if version.kind == TariffVersion.Kind.FLAT:
            return version, version.flat_rate
        if version.kind == TariffVersion.Kind.DYNAMIC:
            return version, self._prices.get((version.pk, hour))
        local = hour.astimezone(zone(self.tz_name))
        weekday, local_hour = local.weekday(), local.hour
        for band in self._bands[version.pk]:
            if weekday in band.days and band.start <= local_hour < band.end:
                return version, band.rate
        raise AssertionError("parse_bands guarantees full coverage")

    def standing_charge(self, hour: datetime) -> tuple[TariffVersion | None, Decimal]:
        """This hour's share of its local day's standing charge.

        A local day has 23, 24 or 25 hours; share i is round(S*(i+1)/n) - round(S*i/n), so the
        shares of a day add up to exactly S whatever the rounding.
        """
        version = self.version_at(hour)
        if version is None or not version.standing_charge_per_day:
            return version, Decimal("0")
        day_start, day_end = local_day_bounds(hour, self.tz_name)
        # Hours of the day are the UTC hours starting inside it (zones with half-hour offsets too).
        first = day_start if day_start.minute == 0 else day_start.replace(minute=0) + HOUR
        count = -(-(day_end - first) // HOUR)
        index = (hour - first) // HOUR
        per_day = version.standing_charge_per_day
        share = round_eur(per_day * (index + 1) / count) - round_eur(per_day * index / count)
        return version, share
