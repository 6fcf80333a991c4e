"""Template context every household page needs: the unread alarm count in the nav."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from alarms.models import AlarmEvent


def alarms(request: HttpRequest) -> dict:
    """``alarm_unread`` for the nav's badge, counted only if a template reads it.

    Lazy, so a page without the nav (an htmx partial, login) costs nothing, and a page whose view
    already counted (the dashboard, through alarms.views.summary_context) shadows it with its own
    figure: view context wins over context processors. One query on the partial index
    alarm_event_unread otherwise. request.household is set by household_required, which has run
    by the time a template renders.
    """
    household = getattr(request, "household", None)
    if household is None:
        return {}

    def unread() -> int:
        return AlarmEvent.objects.filter(household=household, read_at__isnull=True).count()

    # Not even the queryset is built unless read: building one costs ~0.1 ms a chart partial (no nav) would waste.
    return {"alarm_unread": SimpleLazyObject(unread)}
