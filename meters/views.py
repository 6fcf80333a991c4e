"""Household pages of the meters app: the hourly-usage CSV export."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_safe

from lib.csvstream import csv_lines
from lib.dateranges import DateParamError, DateRange, RangeForm
from lib.periods import local_date
from meters.access import HouseholdRequest, household_required
from meters.exports import first_usage_day, usage_filename, usage_rows


@household_required
@require_safe
def usage_csv(request: HouseholdRequest) -> HttpResponse:
    """``?start=&end=`` local dates, inclusive (lib.dateranges: default this local month). A bad range gets the
    form again, with the reason beside it in the household's language (400)."""
    household = request.household
    today = local_date(timezone.now(), household.timezone)
    try:
        days = DateRange.from_params(request.GET, today)
    except DateParamError as error:
        form = RangeForm.refused(request.GET, today, first_usage_day(household), str(error))
        return render(request, "meters/usage_csv.html", {"csv_form": form}, status=400)
    response = StreamingHttpResponse(csv_lines(usage_rows(household, days)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{usage_filename(days)}"'
    return response
