"""From the hourly ledger to a statement's lines: grouped in SQL, rounded once per line, reconciled by a rounding line.

The rounding rule (docs/billing.md, "Statements"): every hour is exact in the ledger (micro-euros);
a statement line is the exact sum of its hours, rounded half up to the cent once; the total is the
ledger's exact sum over the month rounded once; when the rounded lines do not add up to it, a
rounding line carries the difference. So a statement's total always equals, to the cent, the
settled plus the unsettled amounts (cost and taxes) of its hours.

Lines are keyed (``energy:<version>:<rate>``, ``standing:<version>``, ``tax:<order>:<tax>:<rule>``,
``rounding``) so a corrective note can say, key by key, what changed since the documents before it.
Taxes are itemised rule by rule (``tax_lines``): each tax rule's base, rate and amount, exactly as
``meters.taxes.breakdown`` states them, from grouped rows rather than a model instance per hour.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import BooleanField, Case, ExpressionWrapper, IntegerField, Q, Sum, Value, When

from lib.money import KWH_PLACES, exact
from lib.periods import local_date, local_midnight
from meters.models import HourlyUsage, Household, TariffVersion, TaxRule
from meters.pricing import ContractedPowers, TaxSchedule
from meters.taxes import TaxPart, add_to_parts, line_factor
from payments.figures import eur

log = logging.getLogger(__name__)

ZERO = Decimal("0")
CENT = Decimal("0.01")
_DAYS = Decimal("0.000001")
ENERGY, STANDING, TAX, ROUNDING = "energy", "standing", "tax", "rounding"
# The power term and the meter rental (issue 18): one line each per tariff version, their amount only
# (the power term per period, kW x days x price, is the Spanish bill's: issue 18 item 7).
POWER, RENTAL = "power", "rental"
CHARGES = (ENERGY, STANDING, POWER, RENTAL)
_ORDER = {ENERGY: 0, STANDING: 1, POWER: 1, RENTAL: 1, TAX: 2, ROUNDING: 3}


def to_cent(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class UsageGroup:
    """The priced usage lines of a household's month that share kind, tariff version, rate, tax rate and
    whether they are settled: the unit the ledger is read in (one row of one grouped query)."""

    household_id: int
    kind: str
    tariff_version_id: int | None
    rate: Decimal | None
    tax_rate: Decimal
    settled: bool
    kwh: Decimal
    cost_eur: Decimal
    tax_eur: Decimal
    # An hour of the group: its lines lie in one stretch of days over which no tax rule starts or ends,
    # so the rules of this hour's local day are the rules of all of them (``tax_lines``).
    some_hour: datetime | None = None
    region: str = ""
    timezone: str = "UTC"
    # The household's contracted power (kW, highest period) over the stretch, where a tax rule depends on it.
    max_kw: Decimal | None = None


def usage_groups(household_ids: Iterable[int], start: datetime, end: datetime) -> dict[int, list[UsageGroup]]:
    """The households' priced usage lines of hours in [start, end), grouped (two small queries and one grouped).

    A line still waiting for its price is not billed yet (it is not owed either, payments/figures.py);
    once priced, the corrections job bills it on a corrective note. Where a tax rule starts or ends
    inside the period (in any of the households' time zones), the groups are split there too, so each
    group's lines are taxed by one set of rules; a month without such a change costs no extra group.
    """
    ids = list(household_ids)
    households = {
        pk: (region, tz)
        for pk, region, tz in Household.objects.filter(pk__in=ids).values_list("pk", "region", "timezone")
    }
    edges, powers = _rule_edges({tz for _, tz in households.values()}, ids, start, end)
    rows = (
        HourlyUsage.objects.filter(
            household_id__in=ids, hour_start__gte=start, hour_start__lt=end, cost_eur__isnull=False
        )
        .annotate(
            settled=ExpressionWrapper(Q(settled_at__isnull=False), output_field=BooleanField()),
            stretch=Case(
                *(When(hour_start__lt=edge, then=Value(n)) for n, edge in enumerate(edges)),
                default=Value(len(edges)),
                output_field=IntegerField(),
            ),
        )
        .values("household_id", "kind", "tariff_version_id", "rate", "tax_rate", "settled", "stretch")
        .annotate(kwh=Sum("kwh"), cost=Sum("cost_eur"), tax=Sum("tax_eur"))
        .order_by()
    )
    starts = [start, *edges]
    groups: defaultdict[int, list[UsageGroup]] = defaultdict(list)
    for row in rows:
        region, tz = households.get(row["household_id"], ("", "UTC"))
        groups[row["household_id"]].append(
            UsageGroup(
                household_id=row["household_id"],
                kind=row["kind"],
                tariff_version_id=row["tariff_version_id"],
                rate=row["rate"],
                tax_rate=row["tax_rate"] or ZERO,
                settled=bool(row["settled"]),
                kwh=(row["kwh"] or ZERO).quantize(KWH_PLACES, rounding=ROUND_HALF_UP),
                cost_eur=eur(row["cost"]),
                tax_eur=eur(row["tax"]),
                some_hour=starts[row["stretch"]],
                region=region,
                timezone=tz,
                max_kw=powers.at(row["household_id"], starts[row["stretch"]]),
            )
        )
    return groups


def _rule_edges(
    zones: set[str], ids: list[int], start: datetime, end: datetime
) -> tuple[list[datetime], ContractedPowers]:
    """The instants inside (start, end) at which a tax rule starts or ends in one of ``zones``, in order;
    where a rule depends on contracted power, also where a household's contracted power changes, with
    the households' contracted power over the period.

    Rules are few (a handful per tax and year), so all of them are read; most months have no edge.
    """
    days = set()
    conditional = False
    for valid_from, valid_to, limit in TaxRule.objects.values_list("valid_from", "valid_to", "max_contracted_kw"):
        conditional = conditional or limit is not None
        days.add(valid_from)
        if valid_to is not None:
            days.add(valid_to + timedelta(days=1))
    first, last = start - timedelta(days=1), end + timedelta(days=1)
    instants = {local_midnight(day, tz) for tz in zones for day in days if first.date() <= day <= last.date()}
    powers = ContractedPowers()
    if conditional:
        rows = ContractedPowers.rows(ids, end)
        powers = ContractedPowers(rows)
        instants |= {valid_from for _, valid_from, _ in rows}
    return sorted(instant for instant in instants if start < instant < end), powers


def tariff_versions(groups: Iterable[UsageGroup]) -> dict[int, TariffVersion]:
    ids = {group.tariff_version_id for group in groups if group.tariff_version_id is not None}
    return TariffVersion.objects.select_related("tariff").in_bulk(ids) if ids else {}


@dataclass
class Draft:
    """A statement line before it is stored (``StatementLine``'s fields)."""

    key: str
    kind: str
    exact_eur: Decimal = ZERO
    amount_eur: Decimal = ZERO
    name: str = ""
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    tax_rate: Decimal | None = None
    base_exact: Decimal | None = None  # a tax's base, exact; base_eur is it rounded

    @property
    def base_eur(self) -> Decimal | None:
        return None if self.base_exact is None else to_cent(self.base_exact)

    def sort_key(self) -> tuple:
        return (_ORDER[self.kind], self.key)


@dataclass
class Content:
    """What a statement says, before it is stored: its lines and the sums they come from."""

    lines: list[Draft] = field(default_factory=list)
    ledger_cost: Decimal = ZERO
    ledger_tax: Decimal = ZERO
    ledger_kwh: Decimal = ZERO
    settled_exact: Decimal = ZERO  # cost and tax of the settled hours, exact

    @property
    def ledger_total(self) -> Decimal:
        return self.ledger_cost + self.ledger_tax

    @property
    def energy_kwh(self) -> Decimal:
        return sum((line.quantity or ZERO for line in self.lines if line.kind == ENERGY), ZERO)

    @property
    def net_eur(self) -> Decimal:
        return sum((line.amount_eur for line in self.lines if line.kind in CHARGES), ZERO)

    @property
    def tax_eur(self) -> Decimal:
        return sum((line.amount_eur for line in self.lines if line.kind == TAX), ZERO)

    @property
    def total_eur(self) -> Decimal:
        return sum((line.amount_eur for line in self.lines), ZERO)


def compose(groups: list[UsageGroup], versions: dict[int, TariffVersion]) -> Content:
    """The lines of a month's statement from its usage groups: energy per tariff version and rate (one line
    per version for hourly prices), the standing charge per version as days x daily charge, each tax, and
    the rounding line when the lines rounded one by one miss the total rounded once."""
    lines: dict[str, Draft] = {}
    content = Content()
    for group in groups:
        content.ledger_cost += group.cost_eur
        content.ledger_tax += group.tax_eur
        content.ledger_kwh += group.kwh
        if group.settled:
            content.settled_exact += group.cost_eur + group.tax_eur
        if group.kind == HourlyUsage.Kind.MINIMUM:
            continue  # the electricity tax's minimum: a tax, on the tax's line (tax_lines)
        version = versions.get(group.tariff_version_id) if group.tariff_version_id is not None else None
        if group.kind == HourlyUsage.Kind.RETAX:
            # A tax correction's pair of lines (meters/tax_corrections.py): the cost re-taxed at the new rate and
            # the same cost given back at the old one add up to nothing; only their taxes show (tax_lines).
            continue
        if group.kind in (HourlyUsage.Kind.POWER, HourlyUsage.Kind.RENTAL):
            key = f"{group.kind}:{group.tariff_version_id}"
            line = lines.setdefault(key, Draft(key, str(group.kind)))
        elif group.kind == HourlyUsage.Kind.STANDING:
            key = f"standing:{group.tariff_version_id}"
            line = lines.setdefault(
                key, Draft(key, STANDING, unit_price=version.standing_charge_per_day if version else None)
            )
        else:
            hourly = version is not None and version.kind == TariffVersion.Kind.DYNAMIC
            rate = "hourly" if hourly or group.rate is None else f"{group.rate.normalize():f}"
            key = f"energy:{group.tariff_version_id}:{rate}"
            line = lines.setdefault(key, Draft(key, ENERGY, unit_price=None if hourly else group.rate, quantity=ZERO))
            line.quantity += group.kwh
        line.exact_eur += group.cost_eur
    for line in lines.values():
        line.amount_eur = to_cent(line.exact_eur)
        if line.kind == STANDING:
            line.quantity = standing_days(line.exact_eur, line.unit_price)
    content.lines = sorted([*lines.values(), *tax_lines(groups, versions)], key=Draft.sort_key)
    add_rounding(content, to_cent(content.ledger_total))
    return content


def standing_days(amount: Decimal, per_day: Decimal | None) -> Decimal | None:
    """The days a standing charge amount stands for: whole days for whole local days (the ledger's hourly
    shares of a day add up to its charge exactly, meters/pricing.py), a fraction for a day begun part-way."""
    if not per_day:
        return None
    return (amount / per_day).quantize(_DAYS, rounding=ROUND_HALF_UP)


def tax_lines(groups: Iterable[UsageGroup], versions: dict[int, TariffVersion]) -> list[Draft]:
    """Each tax rule on the statement: its name, its rate, its base and what it adds (``meters.taxes.TaxPart``).

    A group's rules are found again as pricing found them (the tariff of its version, the household's
    tax region, the kind of line, the local day of its stretch) and must give the combined factor
    its lines were taxed at. Then per rule, exactly: the base is the lines' cost, plus, for a compound
    rule (VAT), the simple taxes on that cost (the electricity tax is a base of VAT); the amount is
    base x rate. A rule whose rate changed within the month is two rules, each on its own days' base.
    The parts add up to the lines' unrounded tax; each line is rounded once to the cent, and the
    rounding line absorbs what they miss of the ledger (taxes rounded per hour to the micro-euro).

    A group whose rules do not give its factor (lines taxed by hand, a rule changed against the
    admin's refusal) keeps one line at its combined rate, logged: the statement still adds up to the
    ledger, and says only what it can prove.

    The electricity tax's minimum (a ledger line of its own, meters/minimum_tax.py) adds to the
    electricity tax's amount and to VAT's base.
    """
    parts, drafts = tax_parts(groups, versions)
    with exact():
        for part in parts.values():
            drafts.append(
                Draft(
                    f"tax:{int(part.rule.compound)}:{part.rule.tax[:30]}:{part.rule.pk}",
                    TAX,
                    exact_eur=part.amount,
                    name=part.name[:100],
                    tax_rate=part.rate,
                    base_exact=part.base,
                )
            )
    for line in drafts:
        line.amount_eur = to_cent(line.exact_eur)
    return sorted(drafts, key=Draft.sort_key)


def tax_parts(
    groups: Iterable[UsageGroup], versions: dict[int, TariffVersion]
) -> tuple[dict[int, TaxPart], list[Draft]]:
    """The groups' taxes per rule (``TaxPart``, amount set) and the lines of the groups whose rules cannot
    be found again (at their combined rate); ``tax_lines`` says how."""
    parts: dict[int, TaxPart] = {}
    by_rate: dict[Decimal, Draft] = {}
    unmatched_minimum: Draft | None = None
    with exact():
        for group in groups:
            if group.kind == HourlyUsage.Kind.MINIMUM:
                rules = _minimum_rules(group, versions)
                if rules is not None and add_to_parts(parts, rules, group.cost_eur):
                    continue
                # Its rules are not found again: the tax difference on a line of its own, its VAT at its rate.
                unmatched_minimum = unmatched_minimum or Draft(
                    "tax:minimum", TAX, name=str(HourlyUsage.Kind.MINIMUM.label)[:100]
                )
                unmatched_minimum.exact_eur += group.cost_eur
            if not group.tax_rate and not group.tax_eur:
                continue
            rules = None if group.kind == HourlyUsage.Kind.MINIMUM else _rules_of(group, versions)
            if rules is None:
                key = f"tax:{group.tax_rate.normalize():f}"
                line = by_rate.setdefault(group.tax_rate, Draft(key, TAX, tax_rate=group.tax_rate, base_exact=ZERO))
                line.base_exact += group.cost_eur
                line.exact_eur += group.tax_eur
                continue
            simple_tax = sum((group.cost_eur * rule.rate for rule in rules if not rule.compound), ZERO)
            for rule in rules:
                part = parts.setdefault(rule.pk, TaxPart(rule))
                part.base += group.cost_eur + (simple_tax if rule.compound else ZERO)
                part.kwh += group.kwh if group.kind == HourlyUsage.Kind.ENERGY else ZERO
                part.lines += 1
        for part in parts.values():
            part.amount = part.base * part.rate + part.true_up
    drafts = [*by_rate.values(), *([unmatched_minimum] if unmatched_minimum else [])]
    return parts, drafts


def _minimum_rules(group: UsageGroup, versions: dict[int, TariffVersion]) -> tuple[TaxRule, ...] | None:
    """The rules of an energy line at a minimum line's hour (meters/minimum_tax.py), or None when they do
    not give the factor it was taxed at."""
    version = versions.get(group.tariff_version_id) if group.tariff_version_id is not None else None
    if version is None or group.some_hour is None:
        return None
    rules = TaxSchedule(version.tariff, group.region).rules(
        HourlyUsage.Kind.ENERGY, local_date(group.some_hour, group.timezone), group.max_kw
    )
    if line_factor(rules) != group.tax_rate:
        log.warning(
            "statement_tax_minimum_unmatched household=%s tax_rate=%s rules=%s",
            group.household_id,
            group.tax_rate,
            ",".join(str(rule.pk) for rule in rules) or "none",
        )
        return None
    return rules


def _rules_of(group: UsageGroup, versions: dict[int, TariffVersion]) -> tuple[TaxRule, ...] | None:
    """The tax rules that taxed the group's lines, or None when they cannot be found again."""
    version = versions.get(group.tariff_version_id) if group.tariff_version_id is not None else None
    if version is None or group.some_hour is None:
        return None
    schedule = TaxSchedule(version.tariff, group.region)
    day = local_date(group.some_hour, group.timezone)
    # The rules in force now, or those before a rate of the day was corrected (meters/tax_corrections.py).
    rules = schedule.rules_of(group.kind, day, group.max_kw, group.tax_rate)
    if rules is None:
        rules = schedule.rules(group.kind, day, group.max_kw)
        log.warning(
            "statement_tax_unmatched household=%s kind=%s tax_rate=%s rules=%s",
            group.household_id,
            group.kind,
            group.tax_rate,
            ",".join(str(rule.pk) for rule in rules) or "none",
        )
        return None
    return rules


def add_rounding(content: Content, total: Decimal) -> None:
    """Append the rounding line that makes the lines add up to ``total``, if they do not already."""
    content.lines = [line for line in content.lines if line.kind != ROUNDING]
    difference = total - content.total_eur
    if difference:
        content.lines.append(Draft("rounding", ROUNDING, amount_eur=difference))


def difference(now: Content, before: Iterable[Draft]) -> Content:
    """What changed: ``now`` (the month as the ledger has it) less the lines of the documents issued so far.

    Key by key: amounts, exact sums, quantities and tax bases are subtracted; a line whose key is
    gone comes back negated. Lines that changed neither in money nor in what a reader sees of their
    quantity are left out. The rounding line differs like any other, so the month's documents
    together always add up to the ledger's total rounded once.
    """
    issued: dict[str, Draft] = {}
    for line in before:
        total = issued.setdefault(
            line.key, replace(line, exact_eur=ZERO, amount_eur=ZERO, quantity=None, base_exact=None)
        )  # every sum starts from nothing (a tax base kept here was counted twice: a note's base was wrong)
        total.exact_eur += line.exact_eur
        total.amount_eur += line.amount_eur
        if line.quantity is not None:
            total.quantity = (total.quantity or ZERO) + line.quantity
        if line.base_exact is not None:
            total.base_exact = (total.base_exact or ZERO) + line.base_exact
    changed = []
    for key in sorted({*issued, *(line.key for line in now.lines)}):
        current = next((line for line in now.lines if line.key == key), None)
        old = issued.get(key)
        template = current or old
        delta = replace(
            template,
            exact_eur=(current.exact_eur if current else ZERO) - (old.exact_eur if old else ZERO),
            amount_eur=(current.amount_eur if current else ZERO) - (old.amount_eur if old else ZERO),
            quantity=_minus(current and current.quantity, old and old.quantity),
            base_exact=_minus(current and current.base_exact, old and old.base_exact),
        )
        if delta.amount_eur or _shown(delta.quantity, delta.kind):
            changed.append(delta)
    return Content(lines=sorted(changed, key=Draft.sort_key))


def _minus(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    if a is None and b is None:
        return None
    return (a or ZERO) - (b or ZERO)


def _shown(quantity: Decimal | None, kind: str) -> bool:
    """Whether a change of quantity shows on the document (kWh to 3 places, days to 2)."""
    if not quantity:
        return False
    places = Decimal("0.001") if kind == ENERGY else CENT
    return quantity.quantize(places, rounding=ROUND_HALF_UP) != 0
