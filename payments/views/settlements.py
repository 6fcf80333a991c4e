"""The household's payments: the list, one payment's detail, its live state badge, and a CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from django.core.paginator import Paginator
from django.db.models import Min, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from lib import htmx
from lib.apportion import RoundedTable, to_cents
from lib.csvstream import csv_lines
from lib.dateranges import DateParamError, DateRange, RangeForm
from lib.money import exact_places, format_money
from lib.periods import zone
from meters.access import HouseholdRequest, household_required
from meters.models import Household
from payments.models import Settlement, SettlementLine
from payments.networks import explorer_url

PER_PAGE = 50
ZERO = Decimal("0")
CSV_HEADER = [
    "created",
    "period start",
    "period end",
    "kWh",
    "EUR",
    "BSV/EUR",
    "satoshis",
    "fee satoshis",
    "txid",
    "state",
]
_CSV_FIELDS = (
    "created_at",
    "period_start",
    "period_end",
    "kwh",
    "eur",
    "quote__bsv_eur",
    "satoshis",
    "fee_satoshis",
    "txid",
    "state",
)


def _get_settlement(request: HttpRequest, pk: int) -> Settlement:
    """The household's own settlement or 404: another household's id is not found, not forbidden."""
    return get_object_or_404(Settlement.objects.select_related("quote"), pk=pk, household=request.household)


def _first_settlement_day(household: Household) -> date | None:
    """The local date of the household's first payment (the download form's earliest day). One query."""
    first = Settlement.objects.filter(household=household).aggregate(first=Min("created_at"))["first"]
    return None if first is None else timezone.localdate(first, timezone=zone(household.timezone))


def _badge_context(request: HttpRequest) -> dict:
    return {"tz": request.household.timezone, "pending_states": Settlement.PENDING}


@require_safe
@household_required
@vary_on_headers(*htmx.VARY)  # one URL, two bodies (the page, or its table for htmx): caches keep them apart
def settlement_list(request: HouseholdRequest) -> HttpResponse:
    settlements = Settlement.objects.filter(household=request.household).only(
        "pk", "created_at", "period_start", "period_end", "kwh", "eur", "satoshis", "state"
    )
    # Paginator.get_page falls back to the first or last page for junk or out-of-range numbers.
    page = Paginator(settlements.order_by("-created_at", "-pk"), PER_PAGE).get_page(request.GET.get("page"))
    today = timezone.localdate(timezone=zone(request.household.timezone))
    context = {
        **_badge_context(request),
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "csv_form": RangeForm.offer(today, _first_settlement_day(request.household)),
    }
    template = "payments/settlement_list.html"
    if htmx.partial_requested(request, target="settlements-page"):
        template += "#settlements-page"
    return render(request, template, context)


@dataclass
class DayOfLines:
    """A local day of a payment's lines, and what its live lines paid: energy and standing charge, taxes."""

    day: date
    lines: list[SettlementLine] = field(default_factory=list)
    kwh: Decimal = ZERO
    cost: Decimal = ZERO
    taxes: Decimal = ZERO
    shown: tuple[Decimal, Decimal, Decimal] = (ZERO, ZERO, ZERO)  # cost, taxes, paid: to the cent, adding up

    @property
    def paid(self) -> Decimal:
        return self.cost + self.taxes


def days_of(lines: list[SettlementLine], tz_name: str) -> tuple[list[DayOfLines], RoundedTable]:
    """The lines by local day, in order, each day's money rounded with the others so that the days add up to
    the payment (lib/apportion.py). A line's taxes are what it paid beyond its cost (``line_amount``)."""
    tz = zone(tz_name)
    days: dict[date, DayOfLines] = {}
    for line in lines:
        local = line.usage.hour_start.astimezone(tz)
        # The page names its one time zone once; the hour a 25-hour day repeats (02:00 CEST, then
        # 02:00 CET) also says which of the two it is. The datetime itself knows.
        repeated = local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset()
        line.zone_name = local.strftime("%Z") if repeated else ""
        group = days.setdefault(local.date(), DayOfLines(local.date()))
        group.lines.append(line)
        if not line.released:
            cost = line.usage.cost_eur or ZERO
            group.kwh += line.usage.kwh
            group.cost += cost
            group.taxes += line.eur - cost
    ordered = list(days.values())
    table = to_cents([(group.cost, group.taxes) for group in ordered])
    for group, (cost, taxes), paid in zip(ordered, table.cells, table.rows, strict=True):
        group.shown = (cost, taxes, paid)
    return ordered, table


@require_safe
@household_required
@vary_on_headers(*htmx.VARY)  # one URL, two bodies (the page, or one day's lines for htmx)
def settlement_detail(request: HouseholdRequest, pk: int) -> HttpResponse:
    """The payment, what it paid day by day, and the lines of one local day (``?page=``: the day's number)."""
    settlement = _get_settlement(request, pk)
    # A failed settlement's lines were released and owed again; say which later payment took each.
    paid_later_by = SettlementLine.objects.filter(usage_id=OuterRef("usage_id"), released=False).values(
        "settlement_id"
    )[:1]
    lines = list(
        settlement.lines.select_related("usage__meter")
        .annotate(paid_later_by=Subquery(paid_later_by))
        .order_by("usage__hour_start", "usage__kind", "usage__meter__serial", "usage__seq")
    )
    days, table = days_of(lines, request.household.timezone)
    # One local day a page (at most 25 hours of lines per meter and kind); junk or out-of-range numbers
    # fall back to the first or the last day.
    page = Paginator(days, 1).get_page(request.GET.get("page"))
    live = [line for line in lines if not line.released]
    explorer = explorer_url(settlement.txid)
    context = {
        **_badge_context(request),
        "settlement": settlement,
        "line_count": len(lines),
        "days": days,
        "days_table": table,
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "day": page.object_list[0] if days else None,
        "total_kwh": sum((line.usage.kwh for line in live), start=0),
        "total_eur": sum((line.eur for line in live), start=0),
        "explorer_url": explorer,
        "failed": settlement.state in Settlement.FAILED,
        # The exact price the satoshis were computed with, without the column's trailing zeros.
        "quote_price": format_money(settlement.quote.bsv_eur, "EUR", places=exact_places(settlement.quote.bsv_eur)),
    }
    template = "payments/settlement_detail.html"
    if htmx.partial_requested(request, target="settlement-day"):
        template += "#settlement-day"
    return render(request, template, context)


@require_safe
@household_required
def settlement_state(request: HttpRequest, pk: int) -> HttpResponse:
    """The state badge alone: htmx polls it while the payment is pending and stops once it is final."""
    settlement = _get_settlement(request, pk)
    return render(request, "payments/_settlement_state.html", {**_badge_context(request), "settlement": settlement})


def _csv_rows(household: Household, days: DateRange) -> Iterator[list]:
    tz = zone(household.timezone)
    start, end = days.utc_bounds(household.timezone)
    settlements = Settlement.objects.filter(household=household, created_at__gte=start, created_at__lt=end)
    yield CSV_HEADER
    rows = (
        settlements.select_related("quote")
        .only(*_CSV_FIELDS)
        .order_by("created_at", "pk")  # oldest first: the order of a statement
        .iterator(chunk_size=2000)
    )
    for s in rows:
        yield [
            s.created_at.astimezone(tz).isoformat(),
            s.period_start.astimezone(tz).isoformat(),
            s.period_end.astimezone(tz).isoformat(),
            s.kwh,
            s.eur,
            s.quote.bsv_eur,
            s.satoshis,
            s.fee_satoshis,
            s.txid,
            s.state,
        ]


@require_safe
@household_required
def settlements_csv(request: HttpRequest) -> HttpResponse:
    """Settlements created on local dates start..end (inclusive; lib.dateranges, as /usage.csv), streamed:
    a year of hourly rows is 8,760 lines. A bad range gets the form again with the reason (400)."""
    household = request.household
    today = timezone.localdate(timezone=zone(household.timezone))
    try:
        days = DateRange.from_params(request.GET, today)
    except DateParamError as error:
        form = RangeForm.refused(request.GET, today, _first_settlement_day(household), str(error))
        return render(request, "payments/settlements_csv.html", {"csv_form": form}, status=400)
    response = StreamingHttpResponse(csv_lines(_csv_rows(household, days)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="settlements_{days.first}_{days.last}.csv"'
    return response
