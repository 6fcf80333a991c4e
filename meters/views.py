"""Household pages of the meters app: the hourly-usage CSV export."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from lib.csvstream import csv_lines
from lib.dateranges import DateParamError, DateRange
from lib.periods import local_date
from meters.access import HouseholdRequest, household_required
from meters.exports import usage_filename, usage_rows


@household_required
@require_safe
def usage_csv(request: HouseholdRequest) -> HttpResponse:
    """``?start=&end=`` local dates, inclusive (lib.dateranges: default this local month); 400 with a plain
    message if bad."""
    household = request.household
    try:
        days = DateRange.from_params(request.GET, local_date(timezone.now(), household.timezone))
    except DateParamError as error:
        return HttpResponseBadRequest(str(error), content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(csv_lines(usage_rows(household, days)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{usage_filename(days)}"'
    return response
