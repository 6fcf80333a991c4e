"""The household read API: ``/api/v1/me/usage``, ``/balance`` and ``/settlements`` (docs/api.md, docs/openapi.yaml).

A household reads its own data with a personal access token (energypay/accounts/tokens.py); the token
decides the household, so no URL names one and no token can reach another household's rows. Served in the
lean API lane (energypay/middleware.py: no session, CSRF or page middleware). Money and kWh are decimal
strings with six places, as stored; the words are payments/figures.py's, as the dashboard shows them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

from django.db.models import F, Q, Sum
from django.db.models.functions import TruncDate, TruncMonth
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from energypay.accounts import tokens
from energypay.dashboard import dashboard_cards
from lib.dateranges import DateParamError, DateRange, month_of, parse_day
from lib.jsonapi import error
from lib.periods import HOUR, add_months, ceil_hour, first_of_month, hours_between, local_date, local_midnight, zone
from meters.models import HourlyUsage, Household, TariffVersion
from payments import figures
from payments.models import Settlement

HOUR_RES, DAY_RES, MONTH_RES = "hour", "day", "month"
# The longest range per resolution: a month of hours, a leap year of days or months (lib.dateranges).
MAX_DAYS = {HOUR_RES: 31, DAY_RES: 366, MONTH_RES: 366}
PAGE_SIZE, MAX_PAGE_SIZE = 50, 200
ZERO = Decimal("0")


class MeRequest(HttpRequest):
    """A request ``token_required`` let through: the token's household."""

    household: Household
    access_token: Any


def token_required(view: Callable[[MeRequest], JsonResponse]) -> Callable[[HttpRequest], JsonResponse]:
    """GET/HEAD only; a live personal access token (401 otherwise), within its budget (429), its use recorded."""

    @csrf_exempt
    @never_cache  # one household's data: no shared cache may keep it
    @wraps(view)
    def wrapper(request: HttpRequest) -> JsonResponse:
        if request.method not in ("GET", "HEAD"):
            return error(405, "use GET", Allow="GET, HEAD")
        row = tokens.authenticate(tokens.bearer(request.META.get("HTTP_AUTHORIZATION", "")))
        if row is None:
            return error(
                401,
                "missing, invalid or revoked access token",
                code="invalid_token",
                WWW_Authenticate='Bearer realm="household"',
            )
        now = timezone.now()
        wait = tokens.charge(row, now)
        if wait is not None:
            return error(429, "too many requests for this token", Retry_After=str(wait))
        tokens.touch(row, now)
        request.household = row.user.household
        request.access_token = row
        return view(request)  # type: ignore[arg-type]

    return wrapper


def six(value: Decimal | float | None) -> str:
    """A database sum as a six-place decimal string (SQLite sums through floats: figures.eur rounds them back)."""
    return str(figures.eur(value if value is not None else ZERO))


def utc(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(zone("UTC")).isoformat().replace("+00:00", "Z")


# --- /api/v1/me/usage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageQuery:
    days: DateRange
    resolution: str

    @classmethod
    def from_params(cls, params, today: date) -> UsageQuery:
        resolution = (params.get("resolution") or DAY_RES).strip()
        if resolution not in MAX_DAYS:
            raise DateParamError("resolution", "resolution must be hour, day or month.")
        first, last = parse_day(params.get("from"), "from"), parse_day(params.get("to"), "to")
        if first is None and last is None:
            first, last = (today, today) if resolution == HOUR_RES else month_of(today)
        first = first if first is not None else month_of(last)[0]
        last = last if last is not None else (first if resolution == HOUR_RES else month_of(first)[1])
        if last < first:
            raise DateParamError("to", f"to ({last}) is before from ({first}).")
        days = (last - first).days + 1
        if days > MAX_DAYS[resolution]:
            raise DateParamError(
                "to", f"At most {MAX_DAYS[resolution]} days at {resolution} resolution: {first} to {last} is {days}."
            )
        return cls(DateRange(first, last), resolution)


def _buckets(query: UsageQuery, tz_name: str) -> list[tuple[Any, datetime, datetime]]:
    """(key, start, end) per bucket of the range, empty ones included, in order; DST days are 23 or 25 hours."""
    start, end = query.days.utc_bounds(tz_name)
    if query.resolution == HOUR_RES:
        # The UTC hours starting inside the local days, as the chart and the standing charge count them.
        return [(hour, hour, hour + HOUR) for hour in hours_between(ceil_hour(start), end)]
    if query.resolution == DAY_RES:
        days = [query.days.first + timedelta(days=n) for n in range((query.days.last - query.days.first).days + 1)]
        return [(day, local_midnight(day, tz_name), local_midnight(day + timedelta(days=1), tz_name)) for day in days]
    buckets, month = [], first_of_month(query.days.first)
    while month <= query.days.last:
        after = add_months(month, 1)
        # The first and last months are cut at the range's ends.
        buckets.append((month, max(start, local_midnight(month, tz_name)), min(end, local_midnight(after, tz_name))))
        month = after
    return buckets


# The API's names of the tariff kinds (the stored "tou" spelled out); lines priced before versions were
# recorded on them have none: "unknown".
_TARIFF_NAMES = {
    TariffVersion.Kind.FLAT: "flat",
    TariffVersion.Kind.TIME_OF_USE: "time_of_use",
    TariffVersion.Kind.DYNAMIC: "dynamic",
    TariffVersion.Kind.PERIODS: "periods",
}


def _band(tariff_kind: str | None, rate: Decimal | None) -> tuple[str, Decimal | None]:
    # A dynamic tariff has a price per hour: one band for all of them, at the average rate.
    if tariff_kind == TariffVersion.Kind.DYNAMIC:
        return ("dynamic", None)
    return (_TARIFF_NAMES.get(tariff_kind, "unknown"), rate)


def usage_report(household: Household, query: UsageQuery) -> dict[str, Any]:
    """The range's usage lines summed by bucket and tariff band in one query, grouped in the household's zone."""
    tz_name = household.timezone
    start, end = query.days.utc_bounds(tz_name)
    if query.resolution == HOUR_RES:
        bucket = F("hour_start")
    elif query.resolution == DAY_RES:
        bucket = TruncDate("hour_start", tzinfo=zone(tz_name))
    else:
        bucket = TruncMonth("hour_start", tzinfo=zone(tz_name))
    energy, priced = Q(kind=HourlyUsage.Kind.ENERGY), Q(cost_eur__isnull=False)
    rows = (
        HourlyUsage.objects.filter(household=household, hour_start__gte=start, hour_start__lt=end)
        .annotate(bucket=bucket)
        .values("bucket", "kind", "tariff_version__kind", "rate")
        .annotate(
            energy_kwh=Sum("kwh", filter=energy),
            priced_kwh=Sum("kwh", filter=energy & priced),
            cost=Sum("cost_eur"),
            tax=Sum("tax_eur"),
            pending=Sum("kwh", filter=~priced),
        )
        .order_by()
    )
    sums: dict[Any, dict[str, Any]] = {}
    for row in rows:
        key = row["bucket"]
        if isinstance(key, datetime) and query.resolution == MONTH_RES:
            key = key.astimezone(zone(tz_name)).date()
        elif isinstance(key, datetime):
            key = key.astimezone(zone("UTC"))
        total = sums.setdefault(
            key, {"kwh": ZERO, "energy": ZERO, "standing": ZERO, "tax": ZERO, "pending": ZERO, "bands": {}}
        )
        cost = figures.eur(row["cost"]) if row["cost"] is not None else ZERO
        total["tax"] += figures.eur(row["tax"]) if row["tax"] is not None else ZERO
        total["pending"] += figures.eur(row["pending"]) if row["pending"] is not None else ZERO
        if row["kind"] == HourlyUsage.Kind.MINIMUM:  # the electricity tax's minimum: a tax (meters/minimum_tax.py)
            total["tax"] += cost
            continue
        if row["kind"] != HourlyUsage.Kind.ENERGY:  # the fixed charges: standing, power term, meter rental
            total["standing"] += cost
            continue
        kwh = figures.eur(row["energy_kwh"]) if row["energy_kwh"] is not None else ZERO
        total["kwh"] += kwh
        total["energy"] += cost
        if row["priced_kwh"]:
            band = total["bands"].setdefault(_band(row["tariff_version__kind"], row["rate"]), [ZERO, ZERO])
            band[0] += figures.eur(row["priced_kwh"])
            band[1] += cost
    buckets, totals = [], {"kwh": ZERO, "energy": ZERO, "standing": ZERO, "tax": ZERO, "pending": ZERO}
    empty = {"kwh": ZERO, "energy": ZERO, "standing": ZERO, "tax": ZERO, "pending": ZERO, "bands": {}}
    tz = zone(tz_name)
    for key, bucket_start, bucket_end in _buckets(query, tz_name):
        figures_of = sums.get(key, empty)
        for name in totals:
            totals[name] += figures_of[name]
        buckets.append(
            {
                "start": bucket_start.astimezone(tz).isoformat(),
                "end": bucket_end.astimezone(tz).isoformat(),
                **_money(figures_of),
                "bands": [
                    {
                        "tariff": kind,
                        "rate_eur_per_kwh": six(rate if rate is not None else (eur / kwh if kwh else ZERO)),
                        "kwh": six(kwh),
                        "energy_eur": six(eur),
                    }
                    for (kind, rate), (kwh, eur) in sorted(
                        figures_of["bands"].items(), key=lambda item: (item[0][0], item[0][1] or ZERO)
                    )
                ],
            }
        )
    return {
        "timezone": tz_name,
        "resolution": query.resolution,
        "from": query.days.first.isoformat(),
        "to": query.days.last.isoformat(),
        "currency": "EUR",
        "totals": _money(totals),
        "buckets": buckets,
    }


def _money(sums: dict[str, Decimal]) -> dict[str, str]:
    return {
        "kwh": six(sums["kwh"]),
        "energy_eur": six(sums["energy"]),
        "standing_eur": six(sums["standing"]),
        "tax_eur": six(sums["tax"]),
        "eur": six(sums["energy"] + sums["standing"] + sums["tax"]),
        "pending_kwh": six(sums["pending"]),
    }


@token_required
def usage(request: MeRequest) -> JsonResponse:
    today = local_date(timezone.now(), request.household.timezone)
    try:
        query = UsageQuery.from_params(request.GET, today)
    except DateParamError as problem:
        return error(400, str(problem), code="invalid_parameter")
    return JsonResponse(usage_report(request.household, query))


# --- /api/v1/me/balance -------------------------------------------------------------------------------


@token_required
def balance(request: MeRequest) -> JsonResponse:
    now = timezone.now()
    cards = dashboard_cards(request.household, now)
    quote = cards.balance.quote
    return JsonResponse(
        {
            "currency": "EUR",
            "at": utc(now),
            "balance_satoshis": cards.balance.satoshis,
            "balance_eur": None if cards.balance.eur is None else six(cards.balance.eur),
            "quote": None if quote is None else {"bsv_eur": str(quote.bsv_eur), "fetched_at": utc(quote.fetched_at)},
            "owed_eur": six(cards.owed_eur),
            "arrears_eur": six(cards.arrears_eur),
            "arrears_since": utc(cards.arrears_since),
            "days_left": cards.days_left,
            "per_day_eur": None if cards.per_day_eur is None else six(cards.per_day_eur),
            "today": {"kwh": six(cards.today.kwh), "eur": six(cards.today.eur)},
            "month": {
                "kwh": six(cards.month.kwh),
                "eur": six(cards.month.eur),
                "projected_eur": six(cards.projected_eur),
            },
        }
    )


# --- /api/v1/me/settlements ---------------------------------------------------------------------------


def _positive(params, name: str, default: int | None, maximum: int) -> int | None:
    text = (params.get(name) or "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise DateParamError(name, f"{name} must be a whole number from 1 to {maximum}.")
    return int(text)


@token_required
def settlements(request: MeRequest) -> JsonResponse:
    """Newest first, ``limit`` a page (at most 200); ``next`` is the URL of the page after, or null."""
    try:
        limit = _positive(request.GET, "limit", PAGE_SIZE, MAX_PAGE_SIZE)
        before = _positive(request.GET, "before", None, 2**63 - 1)
    except DateParamError as problem:
        return error(400, str(problem), code="invalid_parameter")
    rows = Settlement.objects.filter(household=request.household).select_related("quote").order_by("-pk")
    if before is not None:
        rows = rows.filter(pk__lt=before)
    page = list(rows[: limit + 1])
    more, page = len(page) > limit, page[:limit]
    next_url = None
    if more:
        next_url = request.build_absolute_uri(f"{reverse('api-me-settlements')}?limit={limit}&before={page[-1].pk}")
    return JsonResponse({"settlements": [_settlement(item) for item in page], "next": next_url})


def _settlement(item: Settlement) -> dict[str, Any]:
    return {
        "id": item.pk,
        "state": item.state,
        "period_start": utc(item.period_start),
        "period_end": utc(item.period_end),
        "kwh": six(item.kwh),
        "eur": six(item.eur),
        "satoshis": item.satoshis,
        "bsv_eur": str(item.quote.bsv_eur),
        "txid": item.txid or None,
        "created_at": utc(item.created_at),
        "confirmed_at": utc(item.confirmed_at),
    }
