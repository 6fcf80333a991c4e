"""The staff status page, ``/admin/status/``: the /healthz checks plus what ingest and settlement are doing.

Every figure is one set-based query, whatever the number of meters or households; each section
runs under a statement timeout on PostgreSQL and shows "unavailable" instead of failing the page:
- ingest rates: readings the API received, by ``received_at`` (a BRIN index on PostgreSQL, ops migration
  0002; readings a trusted caller fed in have none);
- rejected readings by reason: the hourly counters ingest keeps (energypay/ops/rejections.py);
- silent meters: active meters not heard from for an hour, a day (or never);
- settlements by state: created in the last hour and day, and how many wait in each pending state;
- households in arrears (payments/figures.py: the admin's, dashboard's and alarms' figure), the largest debts
  first; over ``STATUS_ARREARS_MAX_EUR`` in all, the settlement backlog check fails on this page;
- webhooks: each active endpoint's state (disabled after days of failures: the staff notice; failing) and backlog.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib import admin
from django.db import DatabaseError
from django.db.models import Count, F, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from energypay.health import all_ok, run_checks, time_limited
from energypay.ops.models import RejectionCount
from energypay.ops.rejections import REASONS
from energypay.webhooks.models import WebhookDelivery, WebhookEndpoint
from lib.money import format_money
from lib.periods import HOUR, floor_hour
from meters.models import HourlyUsage, Meter, Reading
from payments import figures
from payments.models import Settlement

log = logging.getLogger(__name__)

QUERY_TIMEOUT = 10  # seconds per section; staff wait for this page, a load balancer never does
ARREARS_SHOWN = 25
FIVE_MINUTES = timedelta(minutes=5)
DAY = timedelta(days=1)
T = TypeVar("T")


def ingest_rates(now: datetime) -> dict[str, Any]:
    """Readings the ingest API received (a history fed in by seed_demo or staff has no ``received_at``)."""
    counts = Reading.objects.filter(received_at__gte=now - HOUR, received_at__lte=now).aggregate(
        hour=Count("pk"), five_minutes=Count("pk", filter=Q(received_at__gte=now - FIVE_MINUTES))
    )
    return {
        "five_minutes": counts["five_minutes"],
        "five_minutes_per_second": round(counts["five_minutes"] / FIVE_MINUTES.total_seconds(), 2),
        "hour": counts["hour"],
        "hour_per_second": round(counts["hour"] / HOUR.total_seconds(), 2),
    }


def rejections(now: datetime) -> dict[str, Any]:
    """Rejected readings by reason, this UTC hour and the last 24 hourly counters (this hour included)."""
    this_hour = floor_hour(now)
    day_start = this_hour - 23 * HOUR
    sums = {
        row["reason"]: row
        for row in RejectionCount.objects.filter(hour_start__gte=day_start)
        .values("reason")
        .annotate(hour=Sum("count", filter=Q(hour_start__gte=this_hour)), day=Sum("count"))
        .order_by()
    }
    rows = [
        (label, sums.get(code, {}).get("hour") or 0, sums.get(code, {}).get("day") or 0)
        for code, label in REASONS.items()
    ]
    rows += [(code, row["hour"] or 0, row["day"] or 0) for code, row in sums.items() if code not in REASONS]
    return {
        "since_hour": this_hour,
        "since_day": day_start,
        "rows": rows,
        "hour_total": sum(row[1] for row in rows),
        "day_total": sum(row[2] for row in rows),
    }


def silent_meters(now: datetime) -> dict[str, int]:
    """Active meters with no request for an hour, and for a day (never heard from counts as silent)."""
    never = Q(last_seen_at__isnull=True)
    return Meter.objects.filter(is_active=True).aggregate(
        active=Count("pk"),
        hour=Count("pk", filter=never | Q(last_seen_at__lt=now - HOUR)),
        day=Count("pk", filter=never | Q(last_seen_at__lt=now - DAY)),
    )


def settlements_by_state(now: datetime) -> list[dict[str, Any]]:
    """Per state: created in the last hour and day, EUR of the day, and how many are in it now (pending states)."""
    recent = {
        row["state"]: row
        for row in Settlement.objects.filter(created_at__gte=now - DAY)
        .values("state")
        .annotate(hour=Count("pk", filter=Q(created_at__gte=now - HOUR)), day=Count("pk"), eur=Sum("eur"))
        .order_by()
    }
    # Pending ones at any age: the (state, updated_at) index finds them.
    pending = {
        row["state"]: row
        for row in Settlement.objects.filter(state__in=Settlement.PENDING)
        .values("state")
        .annotate(now=Count("pk"), oldest=Min("created_at"))
        .order_by()
    }
    return [
        {
            "state": state,
            "label": label,
            "hour": recent.get(state, {}).get("hour", 0),
            "day": recent.get(state, {}).get("day", 0),
            "eur": figures.eur(recent.get(state, {}).get("eur")),
            "pending": pending.get(state, {}).get("now", 0) if state in Settlement.PENDING else None,
            "oldest": pending.get(state, {}).get("oldest"),
        }
        for state, label in Settlement.State.choices
    ]


def arrears(now: datetime) -> dict[str, Any]:
    """Households in arrears (payments/figures.py), the largest debts first."""
    owing = HourlyUsage.objects.filter(figures.in_arrears(now)).order_by()
    totals = owing.aggregate(households=Count("household", distinct=True), eur=Sum(figures.line_amount()))
    largest = (
        owing.values("household", "household__name")
        .annotate(owed=Sum(figures.line_amount()), since=Min("hour_start"))
        .order_by("-owed", "household")[:ARREARS_SHOWN]
    )
    return {
        "households": totals["households"],
        "eur": figures.eur(totals["eur"]),
        "largest": [{**row, "owed": figures.eur(row["owed"])} for row in largest],
    }


def webhooks(now: datetime) -> list[WebhookEndpoint]:
    """Active endpoints, those that need staff (disabled, failing) first, each with its deliveries waiting."""
    waiting = WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), state=WebhookDelivery.State.PENDING).order_by()
    return list(
        WebhookEndpoint.objects.filter(active=True)
        .annotate(
            n_waiting=Coalesce(Subquery(waiting.values("endpoint").annotate(n=Count("pk")).values("n")), 0),
            oldest_waiting=Subquery(waiting.order_by("created_at").values("created_at")[:1]),
        )
        .order_by(F("disabled_at").asc(nulls_last=True), F("failing_since").asc(nulls_last=True), "pk")
    )


def _section(name: str, compute: Callable[[], T]) -> T | None:
    """A section's figures, or None (shown as unavailable) when its query fails or times out."""
    try:
        with time_limited(QUERY_TIMEOUT):
            return compute()
    except DatabaseError:
        log.warning("status_section_failed section=%s", name, exc_info=True)
        return None


def _details(check: dict[str, Any]) -> str:
    return ", ".join(f"{key.replace('_', ' ')}: {value}" for key, value in check.items() if key != "ok")


def judge_arrears(checks: dict[str, dict[str, Any]], owing: dict[str, Any] | None) -> None:
    """The status page's verdict on the settlement backlog also weighs what households owe.

    Over ``STATUS_ARREARS_MAX_EUR`` in all, the backlog is not ok here: money is not arriving. /healthz
    counts the households but leaves them out of its verdict: it says whether the system works, and an
    alert that fires for as long as a few households cannot pay would hide the next real failure.
    """
    backlog = checks.get("settlement_backlog")
    if backlog is None or owing is None:
        return
    limit = settings.STATUS_ARREARS_MAX_EUR
    backlog["households_in_arrears"] = owing["households"]
    backlog["arrears"] = f"{format_money(owing['eur'], 'EUR')} (at most {format_money(limit, 'EUR')})"
    if owing["eur"] > limit:
        backlog["ok"] = False


def status_page(request: HttpRequest) -> HttpResponse:
    """Staff only: energypay/urls.py wraps it in admin.site.admin_view."""
    now = timezone.now()
    checks = run_checks(now)
    owing = _section("arrears", lambda: arrears(now))
    judge_arrears(checks, owing)
    context = {
        **admin.site.each_context(request),
        "title": "System status",
        "now": now,
        "healthy": all_ok(checks),
        "checks": [(name, check["ok"], _details(check)) for name, check in checks.items()],
        "ingest": _section("ingest", lambda: ingest_rates(now)),
        "rejections": _section("rejections", lambda: rejections(now)),
        "silent": _section("silent", lambda: silent_meters(now)),
        "settlements": _section("settlements", lambda: settlements_by_state(now)),
        "arrears": owing,
        "webhooks": _section("webhooks", lambda: webhooks(now)),
    }
    return TemplateResponse(request, "admin/status.html", context)
