"""The household's notifications: the newest ones (reading them marks them read) and where it wants each kind."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_POST, require_safe

from energypay.notifications.forms import PreferencesForm
from energypay.notifications.models import Notification, NotificationPreference, preferences
from meters.access import HouseholdRequest, household_required

SHOWN = 50


def _choices(household_id: int) -> dict[str, dict[str, bool]]:
    return {kind: wants for (_, kind), wants in preferences([household_id]).items()}


@require_safe
@household_required
def notification_list(request: HouseholdRequest) -> HttpResponse:
    """The newest SHOWN notifications; those unread are marked as such on this page and read from now on."""
    household = request.household
    rows = list(Notification.objects.filter(household=household).order_by("-created_at", "-pk")[:SHOWN])
    unread = [row.pk for row in rows if row.read_at is None]
    if unread:
        Notification.objects.filter(pk__in=unread, read_at__isnull=True).update(read_at=timezone.now())
    form = PreferencesForm(initial_choices=_choices(household.pk))
    context = {
        "notifications": rows,
        "unread_ids": set(unread),
        "form": form,
        "tz": household.timezone,
        "notification_unread": 0,  # just read: the nav's badge says so on this very page
    }
    return render(request, "notifications/list.html", context)


@require_POST
@household_required
def save_preferences(request: HouseholdRequest) -> HttpResponse:
    household = request.household
    form = PreferencesForm(request.POST, initial_choices=_choices(household.pk))
    if not form.is_valid():  # checkboxes accept any value; kept for the shape of a view
        messages.error(request, gettext("Your choices could not be saved."))
        return redirect("notifications")
    with transaction.atomic():
        for kind, wants in form.choices().items():
            NotificationPreference.objects.update_or_create(household=household, kind=kind, defaults=wants)
    messages.success(request, gettext("Saved: new notifications follow your choices."))
    return redirect("notifications")
