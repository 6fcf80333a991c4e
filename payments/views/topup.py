"""Adding money: how much to deposit for the coming days, where, and whether it has arrived."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers

from lib.htmx import VARY, partial_requested
from meters.access import HouseholdRequest, household_required
from payments import deposits, topup
from payments.history import wallet_history
from payments.models import Wallet
from payments.networks import get_network
from payments.wallets import open_wallet

RECENT_DEPOSITS = 5


@require_safe
@household_required
@vary_on_headers(*VARY)
@cache_control(private=True, no_cache=True)
def top_up_page(request: HouseholdRequest) -> HttpResponse:
    """The top-up page; ``?days=7|30`` picks the amount (anything else: the default, said so in the page)."""
    wallet = open_wallet(request.household)
    raw = request.GET.get("days", "")
    days = int(raw) if raw in {str(choice) for choice in topup.DAY_CHOICES} else topup.DEFAULT_DAYS
    if partial_requested(request, "deposits"):
        return render(request, "payments/topup.html#deposits", _deposits_context(wallet))
    context = {
        "wallet": wallet,
        "topup": topup.top_up(request.household, wallet, days, timezone.now()),
        "day_choices": topup.DAY_CHOICES,
        "bad_days": bool(raw) and str(days) != raw,
        "tz": request.household.timezone,
        **_deposits_context(wallet),
    }
    return render(request, "payments/topup.html", context)


def _deposits_context(wallet: Wallet) -> dict:
    """The newest deposits (payments/history.py's rows), and whether one is still waiting for a block.

    The network is asked first (at most every few seconds per wallet, payments/deposits.py), on the
    page's load and on each poll: a deposit just sent shows without waiting for any job.
    """
    answered = deposits.check(wallet, get_network())
    rows = [row for row in wallet_history(wallet) if row.kind == "deposit"][:RECENT_DEPOSITS]
    return {
        "deposits": rows,
        "deposit_pending": any(row.state == "unconfirmed" for row in rows),
        "network_answered": answered,
    }
