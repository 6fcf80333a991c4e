"""From the hourly ledger to a statement's lines: grouped in SQL, rounded once per line, reconciled by a rounding line.

The rounding rule (docs/billing.md, "Statements"): every hour is exact in the ledger (micro-euros);
a statement line is the exact sum of its hours, rounded half up to the cent once; the total is the
ledger's exact sum over the month rounded once; when the rounded lines do not add up to it, a
rounding line carries the difference. So a statement's total always equals, to the cent, the
settled plus the unsettled amounts (cost and taxes) of its hours.

Lines are keyed (``energy:<version>:<rate>``, ``standing:<version>``, ``tax:<rate>``, ``rounding``)
so a corrective note can say, key by key, what changed since the documents before it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import BooleanField, ExpressionWrapper, Q, Sum

from lib.money import KWH_PLACES
from meters.models import HourlyUsage, TariffVersion
from payments.figures import eur

ZERO = Decimal("0")
CENT = Decimal("0.01")
_DAYS = Decimal("0.000001")
ENERGY, STANDING, TAX, ROUNDING = "energy", "standing", "tax", "rounding"
_ORDER = {ENERGY: 0, STANDING: 1, TAX: 2, ROUNDING: 3}


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


def usage_groups(household_ids: Iterable[int], start: datetime, end: datetime) -> dict[int, list[UsageGroup]]:
    """The households' priced usage lines of hours in [start, end), grouped (one query).

    A line still waiting for its price is not billed yet (it is not owed either, payments/figures.py);
    once priced, the corrections job bills it on a corrective note.
    """
    rows = (
        HourlyUsage.objects.filter(
            household_id__in=list(household_ids), hour_start__gte=start, hour_start__lt=end, cost_eur__isnull=False
        )
        .annotate(settled=ExpressionWrapper(Q(settled_at__isnull=False), output_field=BooleanField()))
        .values("household_id", "kind", "tariff_version_id", "rate", "tax_rate", "settled")
        .annotate(kwh=Sum("kwh"), cost=Sum("cost_eur"), tax=Sum("tax_eur"))
        .order_by()
    )
    groups: defaultdict[int, list[UsageGroup]] = defaultdict(list)
    for row in rows:
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
            )
        )
    return groups


def tariff_versions(groups: Iterable[UsageGroup]) -> dict[int, TariffVersion]:
    ids = {group.tariff_version_id for group in groups if group.tariff_version_id is not None}
    return TariffVersion.objects.in_bulk(ids) if ids else {}


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
        return sum((line.amount_eur for line in self.lines if line.kind in (ENERGY, STANDING)), ZERO)

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
        version = versions.get(group.tariff_version_id) if group.tariff_version_id is not None else None
        if group.kind == HourlyUsage.Kind.STANDING:
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
    content.lines = sorted([*lines.values(), *tax_lines(groups)], key=Draft.sort_key)
    add_rounding(content, to_cent(content.ledger_total))
    return content


def standing_days(amount: Decimal, per_day: Decimal | None) -> Decimal | None:
    """The days a standing charge amount stands for: whole days for whole local days (the ledger's hourly
    shares of a day add up to its charge exactly, meters/pricing.py), a fraction for a day begun part-way."""
    if not per_day:
        return None
    return (amount / per_day).quantize(_DAYS, rounding=ROUND_HALF_UP)


def tax_lines(groups: Iterable[UsageGroup]) -> list[Draft]:
    """Each tax on the statement: its base, its rate and what it adds, from the usage lines' own taxes.

    The ledger stores per line one combined tax rate (compound taxes multiplied out) and the tax it adds
    (``HourlyUsage.tax_rate``, ``tax_eur``); here the lines are grouped by that rate, so a month with one
    set of taxes shows one line whose base is the cost taxed at it. When the tax rules of meters
    (``meters.taxes.breakdown``) itemise an hour's tax per rule, with its name, rate and exact base and
    amount, this is the one function that changes: one line per rule, keyed ``tax:<rule>``. The
    rounding line absorbs whatever the per-rule amounts miss of the hourly-rounded ledger.
    """
    by_rate: dict[Decimal, Draft] = {}
    for group in groups:
        if not group.tax_rate and not group.tax_eur:
            continue
        key = f"tax:{group.tax_rate.normalize():f}"
        line = by_rate.setdefault(group.tax_rate, Draft(key, TAX, tax_rate=group.tax_rate, base_exact=ZERO))
        line.base_exact += group.cost_eur
        line.exact_eur += group.tax_eur
    for line in by_rate.values():
        line.amount_eur = to_cent(line.exact_eur)
    return sorted(by_rate.values(), key=Draft.sort_key)


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
        total = issued.setdefault(line.key, replace(line, exact_eur=ZERO, amount_eur=ZERO, quantity=None))
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
