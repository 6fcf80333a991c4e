"""The hourly-usage CSV: every usage line of a local date range, joined with the payment that settled it.

Settlements live in ``payments``, which depends on ``meters``; so this module reaches them only
through the reverse relations of ``HourlyUsage`` (``settlement_lines__settlement__...``) and never
imports the payments app.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext

from django.db.models import F, FilteredRelation, Max, Min, Q, Sum, Window

from lib.dateranges import DateRange
from lib.periods import local_date, zone
from meters.models import HourlyUsage, Household

# "eur" is the line's cost, "tax_eur" its taxes: the satoshis paid both (docs/billing.md).
HEADER = ["hour", "kind", "meter", "kwh", "rate_eur_per_kwh", "eur", "tax_eur", "satoshis", "txid", "state"]
UNSETTLED, PRICE_PENDING = "unsettled", "price pending"
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def first_usage_day(household: Household) -> date | None:
    """The household's local date of its first usage line (the download form's earliest day). One query."""
    first = HourlyUsage.objects.filter(household=household).aggregate(first=Min("hour_start"))["first"]
    return None if first is None else local_date(first, household.timezone)


def usage_filename(days: DateRange) -> str:
    return f"usage-{days.first}-to-{days.last}.csv"


def usage_rows(household: Household, days: DateRange) -> Iterator[list[str]]:
    """The CSV's rows (header first), streamed from two queries whatever the range's size.

    Satoshis: a settlement pays S satoshis for E EUR over its lines. Taking its live lines in hour
    order, with C_i the EUR of lines 1..i, line i gets round(S * C_i / E) - round(S * C_(i-1) / E),
    rounding half up. Each line gets its EUR share of S to within one satoshi, and the lines of a
    settlement add up to exactly S, whichever range is exported (the running sum is computed over
    all of the settlement's lines, also those outside the range).

    1. The span of the settlements paying any line of the range (their lines all lie in
       [period_start, period_end)).
    2. Every line of the range widened to that span, with its live settlement line and settlement
       (joins, no query per row) and the running EUR sum per settlement (a window function);
       lines outside the range are read for their running sums only and not written.
    """
    tz_name = household.timezone
    start, end = days.utc_bounds(tz_name)
    lines = HourlyUsage.objects.filter(household=household).annotate(
        live=FilteredRelation("settlement_lines", condition=Q(settlement_lines__released=False))
    )
    span = lines.filter(hour_start__gte=start, hour_start__lt=end).aggregate(
        first=Min("live__settlement__period_start"), last=Max("live__settlement__period_end")
    )
    wide_start = min(start, span["first"] or start)
    wide_end = max(end, span["last"] or end)
    rows = (
        lines.filter(hour_start__gte=wide_start, hour_start__lt=wide_end)
        .annotate(
            paid_through=Window(
                Sum("live__eur"),
                partition_by=[F("live__settlement_id")],
                order_by=[F("hour_start").asc(), F("pk").asc()],
            )
        )
        .order_by("hour_start", "kind", "meter__serial", "seq", "pk")
        .values_list(
            "hour_start",
            "kind",
            "meter__serial",
            "kwh",
            "rate",
            "cost_eur",
            "tax_eur",
            "settled_at",
            "live__eur",
            "paid_through",
            "live__settlement__eur",
            "live__settlement__satoshis",
            "live__settlement__txid",
            "live__settlement__state",
            named=True,
        )
    )
    tz = zone(tz_name)
    yield HEADER
    for row in rows.iterator(chunk_size=2000):
        if start <= row.hour_start < end:
            yield _row(row, tz)


def _row(row, tz) -> list[str]:
    hour: datetime = row.hour_start.astimezone(tz)
    satoshis = txid = ""
    if row.live__settlement__txid is not None:
        total, eur = row.live__settlement__satoshis, row.live__settlement__eur
        satoshis = str(_share(total, eur, row.paid_through) - _share(total, eur, row.paid_through - row.live__eur))
        txid, state = row.live__settlement__txid, row.live__settlement__state
    elif row.cost_eur is None:
        state = PRICE_PENDING
    elif row.settled_at is None:
        state = UNSETTLED
    else:
        state = "settled"  # claimed without a settlement line: not made by this code, shown as it is
    return [
        hour.isoformat(),
        row.kind,
        _text(row.meter__serial or ""),
        _number(row.kwh),
        _number(row.rate),
        _number(row.cost_eur),
        _number(row.tax_eur),
        satoshis,
        txid,
        state,
    ]


def _share(satoshis: int, eur: Decimal, through: Decimal) -> int:
    """round(satoshis * through / eur), half up (away from zero), exact for any 6-place amounts."""
    if not eur:
        return 0
    with localcontext() as context:
        # A quotient that is not exactly k + 0.5 differs from it by more than 1e-30: 60 digits decide.
        context.prec = 60
        return int((satoshis * through / eur).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _number(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def _text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value
