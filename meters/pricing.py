"""Which tariff version and rate price a UTC hour, in the household's local time."""

from __future__ import annotations

import bisect
import uuid
from datetime import datetime
from decimal import Decimal

from lib.money import round_eur
from lib.periods import HOUR, local_day_bounds, zone
from meters.bands import Band, parse_bands
from meters.models import DynamicPrice, Tariff, TariffVersion

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


def versions_in_force(tariff: Tariff, start: datetime, end: datetime) -> list[TariffVersion]:
    """The versions of ``tariff`` pricing some hour of [start, end), oldest first; no query while its revision holds."""
    versions, _ = _tariff_versions(tariff)
    starts = [version.valid_from for version in versions]
    first = max(0, bisect.bisect_right(starts, start) - 1)
    return versions[first : bisect.bisect_left(starts, end)]


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
