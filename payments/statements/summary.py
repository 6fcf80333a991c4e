"""The month-end summary staff reconcile against: households billed, total billed, taxes per tax, paid and unpaid."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.db.models import Count, Q, Sum

from payments.statements.models import Statement, StatementDelivery, StatementLine

ZERO = Decimal("0")
CENT = Decimal("0.01")
KWH = Decimal("0.000001")


@dataclass
class TaxTotal:
    name: str
    rate_text: str
    base_eur: Decimal
    amount_eur: Decimal


@dataclass
class MonthSummary:
    month: date
    households: int = 0
    statements: int = 0
    debit_notes: int = 0
    credit_notes: int = 0
    energy_kwh: Decimal = ZERO
    net_eur: Decimal = ZERO
    tax_eur: Decimal = ZERO
    total_eur: Decimal = ZERO
    taxes: list[TaxTotal] = field(default_factory=list)
    settled_eur: Decimal = ZERO  # each household's month as its latest document stated it
    unsettled_eur: Decimal = ZERO
    mail: dict[str, int] = field(default_factory=dict)


def months_billed() -> list[date]:
    return list(Statement.objects.filter(revision=0).values_list("month", flat=True).distinct().order_by("-month"))


def month_summary(month: date) -> MonthSummary:
    """Every document of ``month`` (statements and corrective notes) summed; a handful of aggregate queries."""
    documents = Statement.objects.filter(month=month)
    summary = MonthSummary(month)
    totals = documents.aggregate(
        households=Count("household", distinct=True),
        statements=Count("pk", filter=Q(kind=Statement.Kind.STATEMENT)),
        debit_notes=Count("pk", filter=Q(kind=Statement.Kind.CORRECTIVE, total_eur__gte=0)),
        credit_notes=Count("pk", filter=Q(kind=Statement.Kind.CORRECTIVE, total_eur__lt=0)),
        energy_kwh=Sum("energy_kwh"),
        net_eur=Sum("net_eur"),
        tax_eur=Sum("tax_eur"),
        total_eur=Sum("total_eur"),
    )
    for name, value in totals.items():
        if name == "energy_kwh":
            value = _exact(value, KWH)
        elif isinstance(getattr(summary, name), Decimal):
            value = _exact(value)
        setattr(summary, name, value)
    taxes = (
        StatementLine.objects.filter(statement__month=month, kind=StatementLine.Kind.TAX)
        .values("key", "name", "tax_rate")
        .annotate(base=Sum("base_eur"), amount=Sum("amount_eur"))
        .order_by("key")
    )
    for row in taxes:
        line = StatementLine(kind=StatementLine.Kind.TAX, name=row["name"], tax_rate=row["tax_rate"])
        summary.taxes.append(TaxTotal(line.label, line.price_text, _exact(row["base"]), _exact(row["amount"])))
    latest: dict[int, tuple[int, Decimal, Decimal]] = {}
    for household_id, revision, settled, unsettled in documents.values_list(
        "household_id", "revision", "settled_eur", "unsettled_eur"
    ):
        if household_id not in latest or revision > latest[household_id][0]:
            latest[household_id] = (revision, settled, unsettled)
    summary.settled_eur = sum((row[1] for row in latest.values()), ZERO)
    summary.unsettled_eur = sum((row[2] for row in latest.values()), ZERO)
    deliveries = StatementDelivery.objects.filter(statement__month=month)
    summary.mail = deliveries.aggregate(
        sent=Count("pk", filter=Q(sent_at__isnull=False)),
        failing=Count("pk", filter=Q(sent_at__isnull=True, attempts__gt=0)),
        waiting=Count("pk", filter=Q(sent_at__isnull=True, attempts=0, skip_reason="")),
        not_sent=Count("pk", filter=Q(sent_at__isnull=True) & ~Q(skip_reason="")),
    )
    return summary


def _exact(value, places: Decimal = CENT) -> Decimal:
    """A database sum as an exact amount of ``places`` (SQLite hands sums back through a float)."""
    return Decimal(str(value or 0)).quantize(places)
