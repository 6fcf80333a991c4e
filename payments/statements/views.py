"""The household's statements: the list, one statement's page, and the same statement as PDF, CSV and JSON."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from lib import htmx
from lib.csvstream import csv_lines
from meters.access import HouseholdRequest, household_required
from payments.statements import rendering
from payments.statements.models import Statement

PER_PAGE = 24


def _get_statement(request: HouseholdRequest, pk: int) -> Statement:
    """The household's own statement or 404: another household's id is not found, not forbidden."""
    return get_object_or_404(Statement.objects.select_related("corrects"), pk=pk, household=request.household)


@require_safe
@household_required
@vary_on_headers(*htmx.VARY)  # one URL, two bodies (the page, or its table for htmx)
def statement_list(request: HouseholdRequest) -> HttpResponse:
    statements = Statement.objects.filter(household=request.household).select_related("corrects")
    ordered = statements.order_by("-month", "-revision", "-pk")
    page = Paginator(ordered, PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "tz": request.household.timezone,
    }
    template = "statements/statement_list.html"
    if htmx.partial_requested(request, target="statements-page"):
        template += "#statements-page"
    return render(request, template, context)


@require_safe
@household_required
def statement_detail(request: HouseholdRequest, pk: int) -> HttpResponse:
    statement = _get_statement(request, pk)
    context = {**rendering.document_context(statement), "corrections": list(statement.corrections.order_by("revision"))}
    return render(request, "statements/statement_detail.html", context)


@require_safe
@household_required
def statement_pdf(request: HouseholdRequest, pk: int) -> HttpResponse:
    statement = _get_statement(request, pk)
    response = HttpResponse(rendering.pdf_bytes(statement), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{statement.file_stem}.pdf"'
    return response


@require_safe
@household_required
def statement_csv(request: HouseholdRequest, pk: int) -> HttpResponse:
    statement = _get_statement(request, pk)
    response = HttpResponse("".join(csv_lines(rendering.csv_rows(statement))), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{statement.file_stem}.csv"'
    return response


@require_safe
@household_required
def statement_json(request: HouseholdRequest, pk: int) -> HttpResponse:
    statement = _get_statement(request, pk)
    response = JsonResponse(rendering.as_json(statement), json_dumps_params={"ensure_ascii": False, "indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{statement.file_stem}.json"'
    return response
