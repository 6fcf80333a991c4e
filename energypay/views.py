"""Pages that compose several apps: the household dashboard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from csp.decorators import csp_update
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.utils import timezone, translation
from django.views import i18n as i18n_views
from django.views.decorators.http import require_POST, require_safe
from django.views.decorators.vary import vary_on_headers

from alarms.views import summary_context
from energypay import comparisons
from energypay.comparisons import compare
from energypay.dashboard import dashboard_cards
from energypay.freshness import freshness
from lib import htmx
from lib.dateranges import RangeForm
from lib.periods import local_date
from meters.access import HouseholdRequest, household_of, household_required
from meters.charts import CACHE_SECONDS, ChartView, cache_key, usage_chart
from meters.exports import first_usage_day
from meters.models import Household

log = logging.getLogger(__name__)


@household_required
@require_safe
@vary_on_headers(*htmx.VARY)  # one URL, two bodies: caches (the back button included) must keep them apart
def dashboard(request: HouseholdRequest) -> HttpResponse:
    """Freshness, cards, alarms and the usage chart. ``?range=&unit=&date=`` pick the chart; htmx asks for the
    chart alone (its cache hit costs no query of its own: the freshness line is the page's, not the chart's)."""
    household = request.household
    now = timezone.now()
    today = local_date(now, household.timezone)
    view = ChartView.from_params(request.GET, today)
    if htmx.partial_requested(request):
        return HttpResponse(_chart_html(request, view, now))
    context = {"chart": usage_chart(household, view, now)}
    context.update(
        cards=dashboard_cards(household, now),
        freshness=freshness(household, now),
        # Its unread count is also the nav's (it shadows energypay.context_processors.alarms').
        **summary_context(household),
        chart_js_url=settings.CHART_JS_URL,
        chart_js_integrity=settings.CHART_JS_INTEGRITY,
        csv_form=RangeForm.offer(today, first_usage_day(household)),
    )
    return render(request, "dashboard.html", context)


def _chart_html(request: HouseholdRequest, view: ChartView, now: datetime) -> bytes:
    """The chart partial, from the cache when this household's chart is there (meters/charts.py, ``cache_key``)."""

    def render_chart() -> bytes:
        context = {"chart": usage_chart(request.household, view, now)}
        return render_to_string("dashboard.html#chart", context, request).encode()

    return _cached_html(cache_key(request.household, view, now), render_chart, CACHE_SECONDS)


def _cached_html(key: str | None, render_html: Callable[[], bytes], timeout: int) -> bytes:
    """A panel's bytes from the cache under ``key`` (None: not cached), else rendered and stored.

    Cached as the response's bytes: a hit unpickles bytes and sends them, with nothing to render or
    encode. The cache is an accelerator: when it cannot answer, the panel is computed as without it.
    """
    html = None
    if key is not None:
        try:
            html = cache.get(key)
        except Exception:  # Redis down or refusing: slower, never a 500
            log.warning("chart_cache_unavailable", exc_info=True)
            key = None
    if html is None:
        html = render_html()
        if key is not None:
            try:
                cache.set(key, html, timeout)
            except Exception:
                log.warning("chart_cache_unavailable", exc_info=True)
    return html


@household_required
@require_safe
@vary_on_headers(*htmx.VARY)
def comparison(request: HouseholdRequest) -> HttpResponse:
    """The period of ``?range=&unit=&date=`` beside the previous one and last year's, and the hint
    (energypay/comparisons.py). The dashboard's chart panel loads it with htmx; without JavaScript
    it is a page of its own."""
    household = request.household
    now = timezone.now()
    view = ChartView.from_params(request.GET, local_date(now, household.timezone))

    def render_panel() -> bytes:
        context = {"comparison": compare(household, view, now)}
        return render_to_string("comparison.html#comparison", context, request).encode()

    if htmx.partial_requested(request):
        return HttpResponse(_cached_html(comparisons.cache_key(household, view, now), render_panel, CACHE_SECONDS))
    return render(request, "comparison.html", {"comparison": compare(household, view, now), "view": view})


# Redoc styles itself with <style> elements it writes (styled-components), searches in a blob: worker
# and draws some icons as data: images: this page alone relaxes the site's policy for those three.
_REDOC_POLICY = {"style-src": ["'unsafe-inline'"], "worker-src": ["blob:"], "img-src": ["data:"]}
OPENAPI_FILE = settings.BASE_DIR / "docs" / "openapi.yaml"


@require_safe
@csp_update(_REDOC_POLICY)
def api_docs(request: HttpRequest) -> HttpResponse:
    """docs/openapi.yaml rendered by the vendored Redoc (static/vendor/redoc-2.5.2): no CDN at run time."""
    return render(request, "api_docs.html")


@require_safe
def openapi_document(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(OPENAPI_FILE.read_bytes(), content_type="application/yaml; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """Django's ``set_language`` (cookie, redirect to ``next``), also stored as the household's choice.

    The household's language then follows it to every browser and to its mails and statements; a
    visitor who is not logged in (the login page) keeps it in the cookie only.
    """
    language = request.POST.get("language", "")
    if translation.check_for_language(language) and language in dict(settings.LANGUAGES):
        household = household_of(request)
        if household is not None and household.language != language:
            Household.objects.filter(pk=household.pk).update(language=language)
            household.language = language
    return i18n_views.set_language(request)


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for by themselves (on JSON pages, the admin): the site's icon."""
    # Not permanent: the icon's static URL may change, and a cached 301 would outlive it.
    return HttpResponseRedirect(static("favicon.svg"))
