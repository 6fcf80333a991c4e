"""What prices a UTC hour of a household: the tariff assigned at that hour, its version in force,
and the taxes in force on the hour's local day.

``HouseholdSchedule`` is what the ledger writers use; it composes a ``TariffSchedule`` per tariff
(versions, bands in local time, dynamic prices) and a ``TaxSchedule`` per tariff and tax region.
"""

from __future__ import annotations

import bisect
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

from lib.money import exact, round_eur
from lib.periods import HOUR, local_date, local_day_bounds, zone
from meters.bands import Band, parse_bands
from meters.calendars import Calendar, get_calendar
from meters.models import (
    ContractedPower,
    DynamicPrice,
    Household,
    Tariff,
    TariffAssignment,
    TariffVersion,
    TaxRule,
    parse_kilowatts,
)

_EARLIEST = datetime.min.replace(tzinfo=UTC)


class Periods:
    """A periods version, parsed: its calendar, EUR/kWh per energy period, EUR/kW/day per power period."""

    def __init__(self, version: TariffVersion) -> None:
        self.calendar: Calendar = get_calendar(version.calendar)
        self.energy = version.energy_prices()
        self.power = version.power_prices()


# Versions per tariff, valid while the tariff's revision is unchanged. Per process, small (one
# entry per tariff), and exact: the revision is read in the same query that locks the meter.
_Parsed = tuple[list[TariffVersion], dict[int, list[Band]], dict[int, Periods]]
_versions: dict[tuple[int, uuid.UUID], _Parsed] = {}


def _tariff_versions(tariff: Tariff) -> _Parsed:
    key = (tariff.pk, tariff.revision)
    if key not in _versions:
        versions = list(TariffVersion.objects.filter(tariff_id=tariff.pk).order_by("valid_from"))
        bands = {v.pk: parse_bands(v.bands) for v in versions if v.kind == TariffVersion.Kind.TIME_OF_USE}
        periods = {v.pk: Periods(v) for v in versions if v.kind == TariffVersion.Kind.PERIODS}
        if len(_versions) > 1000:
            _versions.clear()
        _versions[key] = (versions, bands, periods)
    return _versions[key]


def day_share(hour: datetime, tz_name: str, per_day: Decimal) -> Decimal:
    """This hour's share of a daily amount spread over the hours of its local day.

    A local day has 23, 24 or 25 hours; share i is round(S*(i+1)/n) - round(S*i/n), so the shares
    of a day add up to exactly S rounded to the micro-euro, whatever the day's length.
    """
    day_start, day_end = local_day_bounds(hour, tz_name)
    # Hours of the day are the UTC hours starting inside it (zones with half-hour offsets too).
    first = day_start if day_start.minute == 0 else day_start.replace(minute=0) + HOUR
    count = -(-(day_end - first) // HOUR)
    index = (hour - first) // HOUR
    return round_eur(per_day * (index + 1) / count) - round_eur(per_day * index / count)


def power_per_day(prices: dict[str, Decimal], kw: dict[str, Decimal]) -> Decimal:
    """The power term of one day: contracted kW x EUR/kW/day, summed over the power periods, exactly."""
    with exact():
        return sum((kw.get(period, Decimal(0)) * price for period, price in prices.items()), Decimal(0))


def versions_in_force(tariff: Tariff, start: datetime, end: datetime) -> list[TariffVersion]:
    """The versions of ``tariff`` pricing some hour of [start, end), oldest first; no query while its revision holds."""
    versions, _, _ = _tariff_versions(tariff)
    starts = [version.valid_from for version in versions]
    first = max(0, bisect.bisect_right(starts, start) - 1)
    return versions[first : bisect.bisect_left(starts, end)]


class TariffSchedule:
    """The versions of one tariff in force over [start, end): cached, plus one query for dynamic prices."""

    def __init__(self, tariff: Tariff, tz_name: str, start: datetime, end: datetime) -> None:
        self.tz_name = tz_name
        self._versions, self._bands, self._periods = _tariff_versions(tariff)
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
        if version.kind == TariffVersion.Kind.PERIODS:
            periods = self._periods[version.pk]
            return version, periods.energy[periods.calendar.energy_period(local)]
        weekday, local_hour = local.weekday(), local.hour
        for band in self._bands[version.pk]:
            if weekday in band.days and band.start <= local_hour < band.end:
                return version, band.rate
        raise AssertionError("parse_bands guarantees full coverage")

    def energy_period(self, hour: datetime) -> str | None:
        """The energy period (P1, P2, P3) of a UTC hour in the household's local time; None unless the
        version in force then is priced by periods."""
        version = self.version_at(hour)
        if version is None or version.kind != TariffVersion.Kind.PERIODS:
            return None
        return self._periods[version.pk].calendar.energy_period(hour.astimezone(zone(self.tz_name)))

    def standing_charge(self, hour: datetime) -> tuple[TariffVersion | None, Decimal]:
        """This hour's share of its local day's standing charge.

        A local day has 23, 24 or 25 hours; share i is round(S*(i+1)/n) - round(S*i/n), so the
        shares of a day add up to exactly S whatever the rounding.
        """
        version = self.version_at(hour)
        if version is None or not version.standing_charge_per_day:
            return version, Decimal("0")
        return version, day_share(hour, self.tz_name, version.standing_charge_per_day)

    def power_prices(self, hour: datetime) -> tuple[TariffVersion | None, dict[str, Decimal]]:
        """The version at ``hour`` and its EUR/kW/day per power period (empty: no power term)."""
        version = self.version_at(hour)
        if version is None or version.kind != TariffVersion.Kind.PERIODS:
            return version, {}
        return version, self._periods[version.pk].power

    def power_charge(self, hour: datetime, kw: dict[str, Decimal]) -> tuple[TariffVersion | None, Decimal]:
        """This hour's share of its local day's power term for contracted power ``kw`` (per power period)."""
        version, prices = self.power_prices(hour)
        if not prices or not kw:
            return version, Decimal("0")
        return version, day_share(hour, self.tz_name, power_per_day(prices, kw))


# --- Taxes ----------------------------------------------------------------------------------------

# Tax rules per (tariff, its revision, tax region): every rule change gives every tariff a new
# revision (meters.models.tax_rules_changed), read in the query that loads the tariff, so the cache
# is exact. Small: one entry per tariff and region, each a handful of rules.
_tax_rules: dict[tuple[int | None, uuid.UUID | None, str], tuple[list[TaxRule], dict]] = {}


def _rules_for(tariff: Tariff, region: str) -> tuple[list[TaxRule], dict]:
    key = (tariff.pk, tariff.revision, region)
    if key not in _tax_rules:
        rules = [
            rule
            for rule in TaxRule.objects.prefetch_related("tariffs").order_by("compound", "tax", "valid_from", "pk")
            if rule.region in ("", region)
            and (not rule.tariffs.all() or tariff.pk in {t.pk for t in rule.tariffs.all()})
        ]
        if len(_tax_rules) > 1000:
            _tax_rules.clear()
        _tax_rules[key] = (rules, {})
    return _tax_rules[key]


def combined_rate(rules: Sequence[TaxRule]) -> Decimal:
    """One factor on a line's cost for all ``rules``: the simple rates, plus each compound rate on the
    cost and the simple taxes (VAT 21% on the electricity tax 5.11269632%: 0.0511269632 + 0.21 *
    1.0511269632). Exact: rates have 10 decimals, so the factor has at most 20."""
    with exact():
        simple = sum((rule.rate for rule in rules if not rule.compound), Decimal(0))
        return simple + sum((rule.rate * (1 + simple) for rule in rules if rule.compound), Decimal(0))


def pick_rules(rules: Sequence[TaxRule], max_kw: Decimal | None) -> tuple[TaxRule, ...]:
    """Of ``rules`` (in force for one line), those taxing a household of contracted power ``max_kw``:
    per tax, the ones that admit it with the lowest power limit (no limit counts as the highest), so
    "IVA 10% up to 10 kW" beside "IVA 21%" gives 10% at 10 kW and 21% at 10.001 kW or with none recorded."""
    admitted = [rule for rule in rules if rule.admits(max_kw)]
    lowest: dict[str, Decimal | None] = {}
    for rule in admitted:
        if rule.tax not in lowest or _limit(rule) < _limit_of(lowest[rule.tax]):
            lowest[rule.tax] = rule.max_contracted_kw
    return tuple(rule for rule in admitted if rule.max_contracted_kw == lowest[rule.tax])


def _limit(rule: TaxRule) -> Decimal:
    return _limit_of(rule.max_contracted_kw)


def _limit_of(kw: Decimal | None) -> Decimal:
    return Decimal("Infinity") if kw is None else kw


def max_kilowatts(kw: dict[str, Decimal]) -> Decimal | None:
    """The contracted power a tax condition compares: the highest of the periods (None: none recorded)."""
    return max(kw.values(), default=None)


class ContractedPowers:
    """Households' contracted power over time (kW, highest period), for tax rules limited to contracted power."""

    def __init__(self, rows: Iterable[tuple[int, datetime, dict]] = ()) -> None:
        self._rows: defaultdict[int, list[tuple[datetime, Decimal | None]]] = defaultdict(list)
        for household_id, valid_from, kw in rows:
            self._rows[household_id].append((valid_from, max_kilowatts(parse_kilowatts(kw))))

    @staticmethod
    def rows(household_ids: Iterable[int], before: datetime) -> list[tuple[int, datetime, dict]]:
        """The households' contracted powers that begin before ``before``, in order: what ``__init__`` takes."""
        return list(
            ContractedPower.objects.filter(household_id__in=household_ids, valid_from__lt=before)
            .order_by("household_id", "valid_from")
            .values_list("household_id", "valid_from", "kw")
        )

    def at(self, household_id: int, instant: datetime) -> Decimal | None:
        latest = None
        for valid_from, kw in self._rows.get(household_id, ()):
            if valid_from <= instant:
                latest = kw
        return latest


class TaxSchedule:
    """The tax rules of a tariff's households in one tax region, by kind of line and local day (cached)."""

    def __init__(self, tariff: Tariff, region: str) -> None:
        self._rules, self._memo = _rules_for(tariff, region)
        limits = {rule.max_contracted_kw for rule in self._rules if rule.max_contracted_kw is not None}
        self._limits = sorted(limits)

    @property
    def conditional(self) -> bool:
        """Whether some rule depends on the household's contracted power (else ``max_kw`` is never needed)."""
        return bool(self._limits)

    def _bucket(self, max_kw: Decimal | None) -> Decimal | None:
        # The lowest limit at or above ``max_kw``: households in one bucket are admitted by the same rules.
        if max_kw is None:
            return None
        return next((limit for limit in self._limits if max_kw <= limit), None)

    def rules(
        self, kind: str, day: date, max_kw: Decimal | None = None, *, as_billed: bool = False
    ) -> tuple[TaxRule, ...]:
        """The rules taxing a line of ``kind`` on local ``day`` of a household of contracted power
        ``max_kw`` (kW, the highest period; None: none recorded): the simple ones first, then the compound.

        A rate corrected after its days were billed (``TaxRule.replaces``, meters/tax_corrections.py) is
        the correcting rule from then on; ``as_billed`` gives the rules before the correction, which
        taxed the lines written before it (a statement finds them again to explain those lines)."""
        key = (kind, day, self._bucket(max_kw), as_billed)
        if key not in self._memo:
            in_force = [rule for rule in self._rules if kind in rule.kinds and rule.covers(day)]
            if as_billed:
                in_force = [rule for rule in in_force if rule.replaces_id is None]
            else:
                replaced = {rule.replaces_id for rule in in_force if rule.replaces_id is not None}
                in_force = [rule for rule in in_force if rule.pk not in replaced]
            chosen = pick_rules(in_force, key[2])
            self._memo[key] = (chosen, combined_rate(chosen))
        return self._memo[key][0]

    def rate(self, kind: str, day: date, max_kw: Decimal | None = None) -> Decimal:
        self.rules(kind, day, max_kw)
        return self._memo[kind, day, self._bucket(max_kw), False][1]

    def rules_of(self, kind: str, day: date, max_kw: Decimal | None, factor: Decimal) -> tuple[TaxRule, ...] | None:
        """The rules that taxed a line of ``kind`` at ``factor`` (its ``tax_rate``): those in force now, or those
        before a correction of the day's rates; None when neither gives the factor. A tax correction line
        (kind ``retax``) taxes the cost of lines of any kind: the kind whose rules give its factor."""
        kinds = [kind] if kind != "retax" else ["energy", "standing", "power", "rental"]
        for candidate in kinds:
            for as_billed in (False, True):
                rules = self.rules(candidate, day, max_kw, as_billed=as_billed)
                if combined_rate(rules) == factor:
                    return rules
        return None


# --- A household's hours --------------------------------------------------------------------------


class HouseholdSchedule:
    """What prices a household's hours in [start, end): the tariff assigned at each hour, its
    versions (a ``TariffSchedule`` each) and the taxes in force (a ``TaxSchedule``).

    The usual case costs no query: every hour falls inside [tariff_since, tariff_until), where the
    household's current tariff applies (ingest loads it with the meter). Otherwise the household's
    assignments are read once. Hours before the contract's first assignment are priced by that
    first tariff but accrue no standing charge; a household without any assignment (made in code,
    not through the admin) is on its tariff for every hour.
    """

    def __init__(self, household: Household, start: datetime, end: datetime) -> None:
        self.household = household
        self.tz_name = household.timezone
        self._start, self._end = start, end
        since, until = household.tariff_since, household.tariff_until
        # Hours before it accrue no standing charge; None: no such hour here (or no contract recorded).
        self.contract_start: datetime | None = None
        if since is None or (since <= start and (until is None or end <= until)):
            self._starts, self._tariffs = [_EARLIEST], [household.tariff]
        else:
            assignments = list(
                TariffAssignment.objects.filter(household_id=household.pk)
                .select_related("tariff")
                .order_by("valid_from")
            )
            self.contract_start = assignments[0].valid_from if assignments else None
            self._starts = [_EARLIEST] + [a.valid_from for a in assignments[1:]]
            self._tariffs = [a.tariff for a in assignments] or [household.tariff]
        self._tariff_schedules: dict[int, TariffSchedule] = {}
        self._powers: list[tuple[datetime, dict[str, Decimal]]] | None = None  # read on first use
        # Looked up now, not on first use: a process then caches a tariff's rules the first time it
        # prices any hour of it, as it caches its versions, rather than on the first taxed one.
        self._tax_schedules = {tariff.pk: TaxSchedule(tariff, household.region) for tariff in self._tariffs}

    def tariff_at(self, hour: datetime) -> Tariff:
        return self._tariffs[bisect.bisect_right(self._starts, hour) - 1]

    def _tariff_schedule(self, hour: datetime) -> TariffSchedule:
        tariff = self.tariff_at(hour)
        if tariff.pk not in self._tariff_schedules:
            # Built on first use: the tax breakdown needs no versions and no dynamic prices.
            self._tariff_schedules[tariff.pk] = TariffSchedule(tariff, self.tz_name, self._start, self._end)
        return self._tariff_schedules[tariff.pk]

    def energy_rate(self, hour: datetime) -> tuple[TariffVersion | None, Decimal | None]:
        return self._tariff_schedule(hour).energy_rate(hour)

    def standing_charge(self, hour: datetime) -> tuple[TariffVersion | None, Decimal]:
        """This hour's share of its local day's standing charge; nothing before the contract starts."""
        if self.contract_start is not None and hour < self.contract_start:
            return None, Decimal("0")
        return self._tariff_schedule(hour).standing_charge(hour)

    def contracted_power(self, hour: datetime) -> dict[str, Decimal]:
        """The household's contracted kW per power period at ``hour`` (empty: none recorded)."""
        if self._powers is None:
            rows = ContractedPower.objects.filter(household_id=self.household.pk).order_by("valid_from")
            self._powers = [(row.valid_from, row.kilowatts()) for row in rows]
        index = bisect.bisect_right([start for start, _ in self._powers], hour) - 1
        return self._powers[index][1] if index >= 0 else {}

    def power_charge(self, hour: datetime) -> tuple[TariffVersion | None, Decimal]:
        """This hour's share of its local day's power term; nothing before the contract starts."""
        if self.contract_start is not None and hour < self.contract_start:
            return None, Decimal("0")
        schedule = self._tariff_schedule(hour)
        version, prices = schedule.power_prices(hour)
        if not prices:
            return version, Decimal("0")
        return schedule.power_charge(hour, self.contracted_power(hour))

    def rental_charge(self, hour: datetime, per_day: Decimal) -> tuple[TariffVersion | None, Decimal]:
        """This hour's share of a meter's daily rental; nothing before the contract starts."""
        if not per_day or (self.contract_start is not None and hour < self.contract_start):
            return None, Decimal("0")
        return self._tariff_schedule(hour).version_at(hour), day_share(hour, self.tz_name, per_day)

    def _max_kw(self, schedule: TaxSchedule, hour: datetime) -> Decimal | None:
        # Read only where a rule depends on it: the usual hour costs no query for contracted power.
        return max_kilowatts(self.contracted_power(hour)) if schedule.conditional else None

    def tax_rules(self, kind: str, hour: datetime) -> tuple[TaxRule, ...]:
        schedule = self._tax_schedules[self.tariff_at(hour).pk]
        return schedule.rules(kind, local_date(hour, self.tz_name), self._max_kw(schedule, hour))

    def tax_rules_of(self, kind: str, hour: datetime, factor: Decimal) -> tuple[TaxRule, ...] | None:
        """The rules that taxed a line of ``kind`` at ``hour`` at ``factor`` (``TaxSchedule.rules_of``)."""
        schedule = self._tax_schedules[self.tariff_at(hour).pk]
        return schedule.rules_of(kind, local_date(hour, self.tz_name), self._max_kw(schedule, hour), factor)

    def tax_rate(self, kind: str, hour: datetime) -> Decimal:
        """The combined factor of the taxes on a line of ``kind`` at ``hour`` (HourlyUsage.tax_rate)."""
        schedule = self._tax_schedules[self.tariff_at(hour).pk]
        return schedule.rate(kind, local_date(hour, self.tz_name), self._max_kw(schedule, hour))
