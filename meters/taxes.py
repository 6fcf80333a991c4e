"""Taxes of the hourly ledger: what each tax rule adds to some lines, and which rule changes are refused.

Every ledger line carries one combined factor (``HourlyUsage.tax_rate``) and its tax, rounded per
hour to the micro-euro (``tax_eur``). A statement needs the taxes one by one: ``breakdown`` takes
any lines (a household's month) and gives one ``TaxPart`` per rule, with the base it applies to and
its exact amount. The parts add up exactly to the lines' unrounded tax; docs/billing.md says how
that meets the rounded ledger and the cent.

Rules price the hours of their days forever, so a change may only reach days that have begun in no
household's time zone (``refusal``); rules of one tax that could tax the same line on the same day
are refused (``overlapping``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Q

from lib.money import exact, round_cent
from lib.periods import local_date
from meters.models import HourlyUsage, Household, TaxRule
from meters.pricing import HouseholdSchedule, combined_rate

ZERO = Decimal("0")


class TaxMismatch(Exception):
    """A line's stored tax factor is not what its rules give: the ledger and the rules disagree."""


@dataclass
class TaxPart:
    """One rule's share of some lines' taxes: ``amount`` = ``base`` x ``rate``, exactly (not rounded)."""

    rule: TaxRule
    base: Decimal = ZERO  # EUR: the costs it taxes, plus for a compound rule the exact simple taxes on them
    kwh: Decimal = ZERO  # energy of the energy lines it taxes (the electricity tax's minimum is per MWh)
    lines: int = 0
    # The period's true-up lines of this tax (its minimum, meters/minimum_tax.py): tax charged beyond base x rate.
    true_up: Decimal = ZERO
    amount: Decimal = field(init=False, default=ZERO)

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def rate(self) -> Decimal:
        return self.rule.rate


def breakdown(lines: Iterable[HourlyUsage]) -> list[TaxPart]:
    """The taxes of ``lines`` rule by rule: simple rules first, then compound, each by tax and start.

    Lines waiting for a price owe nothing yet and are left out. The rules of each line are found
    again the way pricing found them (the tariff assigned at its hour, its kind, its local day, its
    household's tax region); a line whose stored ``tax_rate`` is not their combined factor raises
    ``TaxMismatch``, since a statement must not explain a tax it did not charge. A rate change
    inside the lines' period gives two parts for one tax, each on its own days' base (proration).

    Queries: the households not loaded with the lines, once; their assignments where a tariff
    changed inside the period; tax rules once per process and tariff.
    """
    priced = [line for line in lines if line.cost_eur is not None]
    households = _households(priced)
    schedules: dict[int, HouseholdSchedule] = {}
    for household_id, household_lines in _by_household(priced).items():
        hours = [line.hour_start for line in household_lines]
        schedules[household_id] = HouseholdSchedule(
            households[household_id], min(hours), max(hours) + timedelta(hours=1)
        )
    parts: dict[int, TaxPart] = {}
    with exact():
        for line in priced:
            if line.kind == HourlyUsage.Kind.MINIMUM:
                _add_minimum(parts, schedules[line.household_id], line)
                continue
            schedule = schedules[line.household_id]
            rules = schedule.tax_rules_of(line.kind, line.hour_start, line.tax_rate)
            if rules is None:
                rules = schedule.tax_rules(line.kind, line.hour_start)  # _check says what disagrees
            simple = [rule for rule in rules if not rule.compound]
            simple_tax = sum((line.cost_eur * rule.rate for rule in simple), ZERO)
            for rule in rules:
                part = parts.setdefault(rule.pk, TaxPart(rule))
                part.base += line.cost_eur + (simple_tax if rule.compound else ZERO)
                part.kwh += line.kwh if line.kind == HourlyUsage.Kind.ENERGY else ZERO
                part.lines += 1
            _check(line, rules)
        for part in parts.values():
            part.amount = part.base * part.rate + part.true_up
    return sorted(parts.values(), key=lambda p: (p.rule.compound, p.rule.tax, p.rule.valid_from, p.rule.pk))


# The minimum line's taxes (its writing is meters/minimum_tax.py).
def taxed_rule(rules: Sequence[TaxRule]) -> TaxRule | None:
    """Of the rules of an energy line at the period's last hour, the tax with a minimum the line adds to."""
    found = [rule for rule in rules if not rule.compound and rule.minimum_eur_per_mwh is not None]
    return found[0] if len(found) == 1 else None


def line_factor(rules: Sequence[TaxRule]) -> Decimal:
    """The factor of the taxes on a tax: the compound rules' rates (VAT 21% on the electricity tax: 0.21)."""
    with exact():
        return sum((rule.rate for rule in rules if rule.compound), ZERO)


def add_to_parts(parts: dict[int, TaxPart], rules: Sequence[TaxRule], cost: Decimal) -> bool:
    """Add a minimum line's ``cost`` to ``parts`` (by rule pk): to the amount of the tax with the minimum
    among ``rules`` (the rules of an energy line at the line's hour), and to the base of each compound
    rule (VAT's base includes the electricity tax). False, and nothing added, when ``rules`` have no
    single tax with a minimum."""
    rule = taxed_rule(rules)
    if rule is None:
        return False
    with exact():
        part = parts.setdefault(rule.pk, TaxPart(rule))
        part.true_up += cost
        part.lines += 1
        for compound in (r for r in rules if r.compound):
            part = parts.setdefault(compound.pk, TaxPart(compound))
            part.base += cost
            part.lines += 1
    return True


def _add_minimum(parts: dict[int, TaxPart], schedule: HouseholdSchedule, line: HourlyUsage) -> None:
    """A minimum line (meters/minimum_tax.py): its cost is the electricity tax's, and a base of VAT's."""
    rules = schedule.tax_rules(HourlyUsage.Kind.ENERGY, line.hour_start)
    if line_factor(rules) != line.tax_rate or not add_to_parts(parts, rules, line.cost_eur):
        raise TaxMismatch(
            f"usage line {line.pk} ({line.hour_start:%Y-%m-%d %H:%M} UTC, minimum) was taxed at {line.tax_rate}, "
            f"but the rules of its hour ({', '.join(rule.name for rule in rules) or 'none'}) have no single tax with "
            f"a minimum and a factor of {line_factor(rules)} on it"
        )


@dataclass(frozen=True)
class TrueUp:
    """What a statement period owes of a tax beyond its hours, and the VAT on that (both exact).

    ``amount`` is positive where the hours' tax is below the minimum per MWh, negative where the
    period had no consumption (the tax its power term paid hour by hour is given back)."""

    rule: TaxRule
    kwh: Decimal
    charged: Decimal  # what the hours paid of the tax
    due: Decimal  # what the period owes of it
    compound: TaxRule | None  # the tax on top of it (VAT), as in force on the period's last day
    amount: Decimal = field(init=False)
    compound_amount: Decimal = field(init=False)

    def __post_init__(self) -> None:
        with exact():
            object.__setattr__(self, "amount", self.due - self.charged)
            rate = self.compound.rate if self.compound else ZERO
            object.__setattr__(self, "compound_amount", self.amount * rate)


def minimum_true_ups(parts: Iterable[TaxPart]) -> list[TrueUp]:
    """The true-ups a statement period's taxes need (``breakdown`` of the period's lines): for each
    tax with a minimum per MWh (the electricity tax, Ley 38/1992 art. 99.2), the period's tax is at
    least kWh / 1000 x minimum, and nothing for a period without consumption.

    The hours are taxed one by one when they are prepaid; the period's total is only known at its
    end, so the difference is owed (or given back) once, with the VAT on it at the compound rule in
    force on the period's last taxed day. A tax whose rate or minimum changed inside the period is
    one tax: its parts are added up, and its minimum is each rule's over the kWh of that rule's own
    days (a rule without a minimum adds none). True-ups already charged (``TaxPart.true_up``) count
    as charged, so the parts of a period with its true-up lines need nothing more.
    """
    parts = list(parts)
    by_tax: dict[str, list[TaxPart]] = defaultdict(list)
    for part in parts:
        if not part.rule.compound:
            by_tax[part.rule.tax].append(part)
    latest_compound = max(
        (part.rule for part in parts if part.rule.compound), key=lambda rule: (rule.valid_from, rule.pk), default=None
    )
    found = []
    with exact():
        for tax_parts in by_tax.values():
            latest = max(tax_parts, key=lambda part: (part.rule.valid_from, part.rule.pk)).rule
            if all(part.rule.minimum_eur_per_mwh is None for part in tax_parts):
                continue
            kwh = sum((part.kwh for part in tax_parts), ZERO)
            charged = sum((part.amount for part in tax_parts), ZERO)
            floor = sum((part.kwh * (part.rule.minimum_eur_per_mwh or ZERO) / 1000 for part in tax_parts), ZERO)
            due = max(charged, floor) if kwh > 0 else ZERO
            if due != charged:
                found.append(TrueUp(latest, kwh, charged, due, latest_compound))
    return found


def exact_tax(lines: Iterable[HourlyUsage]) -> Decimal:
    """The lines' tax before any rounding: the sum of cost x factor (what ``breakdown``'s parts add up to)."""
    with exact():
        return sum((line.cost_eur * line.tax_rate for line in lines if line.cost_eur is not None), ZERO)


def rounding_line(statement_lines: Iterable[Decimal], lines: Iterable[HourlyUsage]) -> Decimal:
    """What a statement adds so its total is the ledger's to the cent (docs/billing.md): the ledger's
    total (cost plus tax of every priced line, to the cent) less the statement's lines (each in cents)."""
    ledger = sum((line.cost_eur + (line.tax_eur or ZERO) for line in lines if line.cost_eur is not None), ZERO)
    return round_cent(ledger) - sum(statement_lines, ZERO)


def _check(line: HourlyUsage, rules: tuple[TaxRule, ...]) -> None:
    if combined_rate(rules) != line.tax_rate:
        raise TaxMismatch(
            f"usage line {line.pk} ({line.hour_start:%Y-%m-%d %H:%M} UTC, {line.kind}) was taxed at {line.tax_rate}, "
            f"but its rules ({', '.join(rule.name for rule in rules) or 'none'}) give {combined_rate(rules)}"
        )


def _by_household(lines: list[HourlyUsage]) -> dict[int, list[HourlyUsage]]:
    grouped: defaultdict[int, list[HourlyUsage]] = defaultdict(list)
    for line in lines:
        grouped[line.household_id].append(line)
    return grouped


def _households(lines: list[HourlyUsage]) -> dict[int, Household]:
    loaded = {line.household_id: line.household for line in lines if HourlyUsage.household.is_cached(line)}
    missing = {line.household_id for line in lines} - loaded.keys()
    if missing:
        loaded |= Household.objects.select_related("tariff").in_bulk(missing)
    return loaded


# --- Which rule changes are refused ---------------------------------------------------------------

# What decides which lines a rule taxes and how much; its name is only a label.
PRICING_FIELDS = (
    "tax",
    "rate",
    "kinds",
    "compound",
    "region",
    "max_contracted_kw",
    "minimum_eur_per_mwh",
    "valid_from",
    "valid_to",
)


def first_open_day(now: datetime) -> date | None:
    """The first day that has begun in no household's time zone, counting the hour ingest may price
    ahead of the clock (a meter's clock may run INGEST_FUTURE_TOLERANCE fast); None without households."""
    horizon = now + settings.INGEST_FUTURE_TOLERANCE
    zones = set(Household.objects.values_list("timezone", flat=True).distinct().order_by())
    if not zones:
        return None
    return max(local_date(horizon, tz_name) for tz_name in zones) + timedelta(days=1)


def refusal(
    old: TaxRule | None, new: TaxRule | None, old_tariffs: set[int], new_tariffs: set[int], now: datetime
) -> str | None:
    """Why saving ``new`` in place of ``old`` (None: adding or deleting) would re-price begun days, or None.

    A rule prices every hour of its days. Adding or deleting one changes all its days; changing
    what it taxes or at which rate changes all its days before and after; moving an end or a start
    changes only the days between the old and the new date.
    """
    first_open = first_open_day(now)
    if first_open is None:
        return None
    changed = _changed_from(old, new, old_tariffs, new_tariffs)
    if changed is None or changed >= first_open:
        return None
    return (
        f"Days from {changed:%Y-%m-%d} on may already be priced or paid with this rule as it was, and keep "
        f"its rates: a change may only reach days from {first_open:%Y-%m-%d} on. To change a rate from a "
        f"date, end this rule the day before and add a new rule from that date."
    )


def _changed_from(
    old: TaxRule | None, new: TaxRule | None, old_tariffs: set[int], new_tariffs: set[int]
) -> date | None:
    """The first day whose taxes the change touches (None: none)."""
    if old is None or new is None:
        rule = new or old
        return rule.valid_from if rule else None
    if old_tariffs != new_tariffs or any(
        getattr(old, name) != getattr(new, name) for name in PRICING_FIELDS if name not in ("valid_from", "valid_to")
    ):
        return min(old.valid_from, new.valid_from)
    days = []
    if old.valid_from != new.valid_from:
        days.append(min(old.valid_from, new.valid_from))
    if old.valid_to != new.valid_to:
        ends = [end for end in (old.valid_to, new.valid_to) if end is not None]
        days.append(min(ends) + timedelta(days=1))
    return min(days) if days else None


def overlapping(rule: TaxRule, tariff_ids: set[int]) -> list[TaxRule]:
    """Other rules of the same tax that could tax one line on one day with ``rule``.

    They overlap when their days meet, their regions meet (the same, or either for every region),
    their tariffs meet (the same one, or either for every tariff), they share a kind of line and they
    have the same power limit: rules with different limits may meet, the lowest limit a household is
    under wins (meters/pricing.py ``pick_rules``).
    """
    days = Q(valid_to__isnull=True) | Q(valid_to__gte=rule.valid_from)
    if rule.valid_to is not None:
        days &= Q(valid_from__lte=rule.valid_to)
    regions = Q() if not rule.region else Q(region__in=["", rule.region])
    others = TaxRule.objects.filter(days, regions, tax=rule.tax, max_contracted_kw=rule.max_contracted_kw)
    if rule.pk is not None:
        # Nor a correction of its rate on days already billed, which overlaps it on purpose (meters/tax_corrections.py).
        others = others.exclude(pk=rule.pk).exclude(replaces_id=rule.pk)
    if rule.replaces_id is not None:
        others = others.exclude(pk=rule.replaces_id)
    others = others.prefetch_related("tariffs")
    kinds = set(rule.kinds or [])
    found = []
    for other in others:
        theirs = {tariff.pk for tariff in other.tariffs.all()}
        if (not theirs or not tariff_ids or theirs & tariff_ids) and kinds & set(other.kinds):
            found.append(other)
    return found
