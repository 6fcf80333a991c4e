"""``/metrics`` for Prometheus: request rates and latencies per view, readings ingested, and the backlogs.

Two kinds of figure (docs/operations.md, "Metrics"):

- Counted by each process as it works (prometheus-client): requests and their latency per view, from
  ``middleware`` (a counter and a histogram per request, no query, so the ingest path pays a few
  microseconds), and readings by outcome, counted by ingest (lib/metrics.py). Under gunicorn each worker
  counts its own: with ``PROMETHEUS_MULTIPROC_DIR`` set, every worker writes its counts to files there
  and a scrape, whichever worker answers it, adds them all up; without it a scrape shows the answering
  process's counts only (fine for one process, the demo).
- Read from the database at scrape time (``DatabaseCollector``): settlements by state, the alarm mail
  outbox and the webhook backlog, the readings received lately. The same queries as /admin/status/, each
  under its statement timeout; a section that fails is left out and ``energypay_scrape_section_ok`` says so.
  Workers need not be scraped: what they do shows in the database.

Who may read it: a staff login that passed the admin's second factor, or ``Authorization: Bearer
<METRICS_TOKEN>`` (a Prometheus job's ``authorization`` setting), compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterator

from django.conf import settings
from django.contrib import admin
from django.db.models import Count, Min
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from alarms.models import AlarmEvent
from energypay import status
from energypay.webhooks.models import WebhookDelivery

REQUESTS = Counter(
    "energypay_http_requests",
    "HTTP requests answered, by view (URL name), method and status.",
    ["view", "method", "status"],
)
LATENCY = Histogram(
    "energypay_http_request_duration_seconds",
    "Time from the request reaching Django to its answer, by view (URL name).",
    ["view"],
    # Ingest answers in a millisecond or two; a year's CSV export takes seconds.
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Any other method string a client invents is one label, not a new series per invention.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # no route: unknown paths (404) and what is answered before routing (431)


def view_label(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)  # set by Django's routing, and by the lean lane
    return match.view_name if match is not None else UNMATCHED


def middleware(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Count every request and time it, by view: outermost, so the lean API lane is counted too."""

    def count(request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = get_response(request)
        view = view_label(request)
        method = request.method if request.method in _METHODS else "other"
        LATENCY.labels(view).observe(time.perf_counter() - started)
        REQUESTS.labels(view, method, str(response.status_code)).inc()
        return response

    return count


class DatabaseCollector(Collector):
    """Gauges read from the database when Prometheus scrapes: the status page's set-based queries."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        sections = GaugeMetricFamily(
            "energypay_scrape_section_ok",
            "1 when the section's query answered in time, 0 when it failed.",
            labels=["section"],
        )
        for name, read in (
            ("settlements", self._settlements),
            ("alarm_outbox", self._alarm_outbox),
            ("webhooks", self._webhooks),
            ("readings", self._readings),
        ):
            families = status._section(name, lambda read=read: list(read(now)))
            sections.add_metric([name], 0 if families is None else 1)
            yield from families or []
        yield sections

    @staticmethod
    def _settlements(now) -> Iterator[GaugeMetricFamily]:
        pending = GaugeMetricFamily(
            "energypay_settlements_pending", "Settlements waiting in a pending state now, by state.", labels=["state"]
        )
        day = GaugeMetricFamily(
            "energypay_settlements_last_day",
            "Settlements created in the last 24 hours, by their state now.",
            labels=["state"],
        )
        for row in status.settlements_by_state(now):
            day.add_metric([row["state"]], row["day"])
            if row["pending"] is not None:
                pending.add_metric([row["state"]], row["pending"])
        yield pending
        yield day

    @staticmethod
    def _alarm_outbox(now) -> Iterator[GaugeMetricFamily]:
        waiting = AlarmEvent.objects.filter(notified_at__isnull=True, next_attempt_at__isnull=False).aggregate(
            n=Count("pk"), oldest=Min("at")
        )
        yield GaugeMetricFamily(
            "energypay_alarm_outbox_backlog", "Alarm events whose mail is not sent yet.", value=waiting["n"]
        )
        yield _age(
            "energypay_alarm_outbox_oldest_seconds",
            "Age of the oldest alarm event waiting for its mail.",
            waiting["oldest"],
            now,
        )

    @staticmethod
    def _webhooks(now) -> Iterator[GaugeMetricFamily]:
        waiting = WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING).aggregate(
            n=Count("pk"), oldest=Min("created_at")
        )
        yield GaugeMetricFamily(
            "energypay_webhook_backlog", "Webhook deliveries not delivered nor given up yet.", value=waiting["n"]
        )
        yield _age(
            "energypay_webhook_oldest_seconds", "Age of the oldest webhook delivery waiting.", waiting["oldest"], now
        )
        disabled = GaugeMetricFamily(
            "energypay_webhook_endpoints_disabled",
            "Active endpoints disabled after days of failures (they need staff).",
        )
        disabled.add_metric([], sum(1 for endpoint in status.webhooks(now) if endpoint.disabled_at is not None))
        yield disabled

    @staticmethod
    def _readings(now) -> Iterator[GaugeMetricFamily]:
        rates = status.ingest_rates(now)
        yield GaugeMetricFamily(
            "energypay_readings_received_last_5m",
            "Readings stored in the last five minutes (all processes).",
            value=rates["five_minutes"],
        )
        yield GaugeMetricFamily(
            "energypay_readings_received_last_hour",
            "Readings stored in the last hour (all processes).",
            value=rates["hour"],
        )


def _age(name: str, documentation: str, oldest, now) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=(now - oldest).total_seconds() if oldest else 0)


def allowed(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if expected and scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode()):
        return True
    return admin.site.has_permission(request)  # staff, with the admin's second factor


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not allowed(request):
        response = HttpResponse(
            "Staff login or the metrics bearer token required.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)  # every worker's files, added up
    else:
        counted = REGISTRY
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    return HttpResponse(generate_latest(counted) + generate_latest(database), content_type=CONTENT_TYPE_LATEST)
