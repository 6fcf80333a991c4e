"""Pages that compose several apps: the household dashboard."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from alarms.views import summary_context
from energypay.dashboard import dashboard_cards
from lib import htmx
from lib.dateranges import DateRange
from lib.periods import local_date
from meters.access import HouseholdRequest, household_required
from meters.charts import ChartView, usage_chart


@household_required
@require_safe
@vary_on_headers(*htmx.VARY)  # one URL, two bodies: caches (the back button included) must keep them apart
def dashboard(request: HouseholdRequest) -> HttpResponse:
    """Cards, alarms and the usage chart. ``?range=&unit=&date=`` pick the chart; htmx asks for the chart alone."""
    household = request.household
    now = timezone.now()
    today = local_date(now, household.timezone)
    view = ChartView.from_params(request.GET, today)
    context = {"chart": usage_chart(household, view, now)}
    if htmx.partial_requested(request):
        return render(request, "dashboard.html#chart", context)
    context.update(
        cards=dashboard_cards(household, now),
        # Its unread count is also the nav's (it shadows energypay.context_processors.alarms').
        **summary_context(household),
        chart_js_url=settings.CHART_JS_URL,
        chart_js_integrity=settings.CHART_JS_INTEGRITY,
        csv_range=DateRange.default(today),
    )
    return render(request, "dashboard.html", context)
