"""The household's alarms: the list with history, create, edit, pause/resume, mute, delete.

Every action is a real form POST that redirects back to the list without JavaScript; with htmx
it answers with the piece of the page it changed (the rule's row, the rule list, the form).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from alarms.evaluation import evaluate_households
from alarms.forms import AlarmRuleForm
from alarms.models import AlarmEvent, AlarmRule
from lib import htmx
from meters.access import HouseholdRequest, household_required
from meters.models import Household

PER_PAGE = 20
SUMMARY_EVENTS = 5
MUTE_FOR = {"1h": timedelta(hours=1), "24h": timedelta(hours=24), "7d": timedelta(days=7)}
MUTE_MESSAGES = {
    "1h": gettext_lazy("No emails for 1 hour: %(alarm)s."),
    "24h": gettext_lazy("No emails for 24 hours: %(alarm)s."),
    "7d": gettext_lazy("No emails for 7 days: %(alarm)s."),
}
LIST = "alarms/alarm_list.html"


def _get_rule(request: HouseholdRequest, pk: int) -> AlarmRule:
    """The household's own rule or 404: another household's id is not found, not forbidden."""
    return get_object_or_404(AlarmRule, pk=pk, household=request.household)


def _rules(household: Household) -> QuerySet[AlarmRule]:
    return AlarmRule.objects.filter(household=household).order_by("created_at", "pk")


def _base_context(request: HouseholdRequest) -> dict:
    return {"tz": request.household.timezone, "now": timezone.now()}


def _row(request: HouseholdRequest, rule: AlarmRule) -> HttpResponse:
    return render(request, f"{LIST}#rule-row", {**_base_context(request), "rule": rule})


def _rules_list(request: HouseholdRequest, *, oob: bool = False) -> str:
    context = {**_base_context(request), "rules": list(_rules(request.household)), "oob": oob}
    return render_to_string(f"{LIST}#rules", context, request)


def _form_context(request: HouseholdRequest, form: AlarmRuleForm, rule: AlarmRule | None, target: str) -> dict:
    return {
        **_base_context(request),
        "form": form,
        "rule": rule,
        "target": target,
        "action": reverse("alarm-edit", args=[rule.pk]) if rule else reverse("alarm-create"),
        "cancel_url": reverse("alarm-detail", args=[rule.pk]) if rule and target != "alarm-form" else "",
    }


def _form_response(request: HouseholdRequest, form: AlarmRuleForm, rule: AlarmRule | None) -> HttpResponse:
    """The form where it was asked for: in the rule's row, alone (kind changed, errors), or as a page."""
    target = request.htmx.target if request.htmx else None
    if rule is not None and target == f"alarm-rule-{rule.pk}":
        return render(request, f"{LIST}#rule-edit", _form_context(request, form, rule, target))
    context = _form_context(request, form, rule, "alarm-form")
    if target == "alarm-form":
        return render(request, "alarms/_rule_form.html", context)
    return render(request, "alarms/alarm_form.html", context)


def _on_list_page(request: HouseholdRequest) -> bool:
    """An htmx request from the list page itself (which holds the create form beside the rules)."""
    return bool(request.htmx) and urlsplit(request.htmx.current_url_abs_path or "").path == reverse("alarm-list")


def _evaluate_now(rule: AlarmRule) -> None:
    # One rule of one household: a handful of queries, so the list shows its state at once.
    evaluate_households([rule.household_id], "all", rule_ids=[rule.pk])


def _history(request: HouseholdRequest) -> dict:
    """A page of events, newest first; those shown are marked read (after the page noted which were new)."""
    events = AlarmEvent.objects.filter(household=request.household).order_by("-at", "-pk")
    page = Paginator(events, PER_PAGE).get_page(request.GET.get("page"))
    unread = AlarmEvent.objects.filter(household=request.household, read_at__isnull=True).count()
    new = [event.pk for event in page.object_list if event.read_at is None]
    marked = AlarmEvent.objects.filter(pk__in=new, read_at__isnull=True).update(read_at=timezone.now()) if new else 0
    return {
        "page": page,
        "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
        "unread": unread,
        # The nav's badge: what is still unread after this page. Known already, so it shadows
        # energypay.context_processors.alarms' count (a second COUNT of the same rows).
        "alarm_unread": unread - marked,
    }


@require_GET
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_list(request: HouseholdRequest) -> HttpResponse:
    context = {**_base_context(request), **_history(request)}
    if htmx.partial_requested(request, "alarm-history"):
        return render(request, f"{LIST}#history", context)
    form = AlarmRuleForm(household=request.household)
    context |= {"rules": list(_rules(request.household)), **_form_context(request, form, None, "alarm-form")}
    return render(request, LIST, context)


@require_GET
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_detail(request: HouseholdRequest, pk: int) -> HttpResponse:
    """One rule's row (the inline editor's Cancel); without htmx, the list at that rule."""
    rule = _get_rule(request, pk)
    if htmx.partial_requested(request):
        return _row(request, rule)
    return redirect(f"{reverse('alarm-list')}#alarm-rule-{rule.pk}")


@require_http_methods(["GET", "POST"])
@household_required
@vary_on_headers(*htmx.VARY, "HX-Current-URL")  # the list page gets its form back in place
def alarm_create(request: HouseholdRequest) -> HttpResponse:
    if request.method == "GET":
        form = AlarmRuleForm(household=request.household, initial=AlarmRuleForm.initial_from(request.GET))
        return _form_response(request, form, None)
    form = AlarmRuleForm(request.POST, household=request.household)
    if not form.is_valid():
        return _form_response(request, form, None)
    rule = AlarmRule.objects.create(
        household=request.household, kind=form.cleaned_data["kind"], threshold=form.cleaned_data["threshold"]
    )
    _evaluate_now(rule)
    if _on_list_page(request):
        # A fresh form where the old one was, and the rule list swapped out of band.
        fresh = _form_context(request, AlarmRuleForm(household=request.household), None, "alarm-form")
        return HttpResponse(render_to_string("alarms/_rule_form.html", fresh, request) + _rules_list(request, oob=True))
    messages.success(request, gettext("Alarm added: %(alarm)s.") % {"alarm": rule.description})
    if request.htmx:
        return HttpResponseClientRedirect(reverse("alarm-list"))
    return redirect("alarm-list")


@require_http_methods(["GET", "POST"])
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_edit(request: HouseholdRequest, pk: int) -> HttpResponse:
    rule = _get_rule(request, pk)
    if request.method == "GET":
        initial = {"kind": rule.kind, "threshold": rule.threshold} | AlarmRuleForm.initial_from(request.GET)
        return _form_response(request, AlarmRuleForm(household=request.household, rule=rule, initial=initial), rule)
    form = AlarmRuleForm(request.POST, household=request.household, rule=rule)
    if not form.is_valid():
        return _form_response(request, form, rule)
    rule.edit(form.cleaned_data["kind"], form.cleaned_data["threshold"])
    _evaluate_now(rule)
    rule.refresh_from_db()
    if request.htmx and request.htmx.target == f"alarm-rule-{rule.pk}":
        return _row(request, rule)
    messages.success(request, gettext("Alarm changed: %(alarm)s.") % {"alarm": rule.description})
    if request.htmx:
        return HttpResponseClientRedirect(reverse("alarm-list"))
    return redirect("alarm-list")


def _after_action(request: HouseholdRequest, rule: AlarmRule, message: str) -> HttpResponse:
    if request.htmx:
        rule.refresh_from_db()
        return _row(request, rule)
    messages.success(request, message)
    return redirect(f"{reverse('alarm-list')}#alarm-rule-{rule.pk}")


@require_POST
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_pause(request: HouseholdRequest, pk: int) -> HttpResponse:
    rule = _get_rule(request, pk)
    rule.pause()
    return _after_action(request, rule, gettext("Paused: %(alarm)s.") % {"alarm": rule.description})


@require_POST
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_resume(request: HouseholdRequest, pk: int) -> HttpResponse:
    rule = _get_rule(request, pk)
    if rule.resume():
        _evaluate_now(rule)
    return _after_action(request, rule, gettext("Resumed: %(alarm)s.") % {"alarm": rule.description})


@require_POST
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_mute(request: HouseholdRequest, pk: int) -> HttpResponse:
    rule = _get_rule(request, pk)
    duration = request.POST.get("for", "")
    if duration == "off":
        rule.mute(None)
        return _after_action(request, rule, gettext("Emails on again: %(alarm)s.") % {"alarm": rule.description})
    if duration not in MUTE_FOR:
        return HttpResponseBadRequest(gettext("Mute for 1h, 24h or 7d, or off."))
    rule.mute(timezone.now() + MUTE_FOR[duration])
    return _after_action(request, rule, str(MUTE_MESSAGES[duration]) % {"alarm": rule.description})


@require_POST
@household_required
@vary_on_headers(*htmx.VARY)
def alarm_delete(request: HouseholdRequest, pk: int) -> HttpResponse:
    rule = _get_rule(request, pk)
    description = rule.description
    rule.delete()  # its events stay in the history (rule set to null)
    if request.htmx:
        return HttpResponse(_rules_list(request))
    messages.success(request, gettext("Deleted: %(alarm)s.") % {"alarm": description})
    return redirect("alarm-list")


def summary_context(household: Household) -> dict:
    """For the dashboard (templates/alarms/_summary.html): unread count and the latest events, two queries."""
    events = AlarmEvent.objects.filter(household=household)
    return {
        "alarm_unread": events.filter(read_at__isnull=True).count(),
        "alarm_events": list(events.order_by("-at", "-pk")[:SUMMARY_EVENTS]),
        "alarm_tz": household.timezone,
    }
