"""Template context every page needs: the unread alarm and notification counts in the nav, the test-network banner."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from alarms.models import AlarmEvent
from energypay.notifications.models import Notification


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


def notifications(request: HttpRequest) -> dict:
    """``notification_unread`` for the nav's badge: unread notifications of kinds the household wants there.

    Lazy like ``alarms``: one query on the partial index notification_unread_badge, only if read.
    """
    household = getattr(request, "household", None)
    if household is None:
        return {}
    return {"notification_unread": SimpleLazyObject(lambda: Notification.objects.unread_badge(household).count())}


def network(request: HttpRequest) -> dict:
    """``test_network``: the BSV network's name when it is not mainnet (local ledger, regtest, testnet), else "".

    Every page shows a banner then, so nobody takes demo or test coins for money; never on mainnet.
    """
    name = settings.BSV_NETWORK
    return {"test_network": "" if name == "mainnet" else name}
