"""The community comparison page and its one-click paywall (payments/passes.py moves the money)."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib import messages
from django.db import DatabaseError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect

from lib.money import format_sats, satoshis_to_eur
from meters.access import HouseholdRequest, household_required
from payments import community, passes
from payments.broadcast import send_one
from payments.figures import wallet_balance
from payments.models import CommunityPass, Wallet
from payments.networks import explorer_url, get_network

log = logging.getLogger(__name__)


@require_GET
@household_required
def community_page(request: HouseholdRequest) -> HttpResponse:
    """Open: the household's average day against everyone's. Locked: the price and the unlock button."""
    household, now = request.household, timezone.now()
    community_pass = passes.live_pass(household, now)
    context = {
        "tz": household.timezone,
        "community_pass": community_pass,
        "price_sats": settings.COMMUNITY_PRICE_SATS,
        "access_days": settings.COMMUNITY_ACCESS_DAYS,
        "explorer_url": "",
    }
    if community_pass is not None:
        comparison = community.comparison(household, now)
        context["explorer_url"] = explorer_url(community_pass.txid)
        context.update(
            comparison=comparison,
            chart_data=_chart_data(comparison),
            chart_js_url=settings.CHART_JS_URL,
            chart_js_integrity=settings.CHART_JS_INTEGRITY,
        )
    else:
        # A GET moves no money and opens no wallet: a household without one simply holds nothing yet.
        balance = wallet_balance(Wallet.objects.filter(household=household).first(), now)
        context.update(
            balance=balance,
            price_eur=satoshis_to_eur(settings.COMMUNITY_PRICE_SATS, balance.quote.bsv_eur) if balance.quote else None,
            last_failed=CommunityPass.objects.filter(household=household, state__in=CommunityPass.FAILED)
            .order_by("-created_at")
            .first(),
        )
    return render(request, "payments/community.html", context)


@require_POST
@household_required
@vary_on_headers("HX-Request")  # htmx gets a client-side redirect, a plain form post a 302
def unlock(request: HouseholdRequest) -> HttpResponse:
    """Pay for a pass once, however often the button is pressed; then back to the page (POST/redirect/GET)."""
    household, now = request.household, timezone.now()
    try:
        purchase = passes.buy_pass(household, now)
    except passes.CannotPay as error:
        messages.error(request, str(error))
        return _back(request)
    except DatabaseError:
        log.warning("community_unlock_raced household=%s", household.pk, exc_info=True)
        messages.error(
            request, gettext("Your wallet was busy with another payment. Nothing was charged; please try again.")
        )
        return _back(request)
    community_pass = purchase.community_pass
    if not purchase.new:
        messages.info(request, gettext("The community comparison is already unlocked; nothing was charged again."))
        return _back(request)
    # After commit: the pass is recorded and its coins reserved, so a crash here leaves it for the sweeper.
    state = send_one(CommunityPass, community_pass.pk, get_network())
    if state in CommunityPass.FAILED:
        messages.error(
            request, gettext("The network refused the payment, so nothing was charged and the page stays locked.")
        )
    else:
        messages.success(
            request,
            gettext("Paid %(amount)s: the community comparison is open.")
            % {"amount": format_sats(community_pass.satoshis)},
        )
    return _back(request)


def _back(request: HouseholdRequest) -> HttpResponse:
    # htmx posts the form; a plain redirect would be followed inside the XHR and swapped into the form.
    url = reverse("community")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _chart_data(comparison: community.Comparison) -> dict:
    """Plain numbers for Chart.js (via json_script): kWh per hour, null where unknown or hidden."""

    def number(value) -> float | None:
        return None if value is None else float(value)

    return {
        "labels": [f"{hour.hour:02d}" for hour in comparison.household],
        "household": [number(hour.kwh) for hour in comparison.household],
        "community": [number(hour.kwh) for hour in comparison.community],
        # The chart's words, in the reader's language (static/js/community-chart.js).
        "text": {
            "household": gettext("You (kWh)"),
            "community": gettext("All households (kWh)"),
            "hour": gettext("Hour of day"),
            "hidden": gettext("not enough households"),
        },
    }
