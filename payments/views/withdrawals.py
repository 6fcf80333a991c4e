"""Closing an account and withdrawing the wallet's balance, by the household (payments/withdrawals.py moves the money).

One page (``/account/close/``): close the account (from the next hour nothing is billed), then, once
its last hours are paid, give an address, see the amount and the network fee, and confirm. Every
step is a POST that redirects or renders the page again with a clear error; nothing changes on an error.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.db import DatabaseError
from django.db.models import Sum
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from lib.periods import zone
from meters.access import HouseholdRequest, household_required
from meters.contracts import close_account
from meters.models import HourlyUsage
from payments import withdrawals
from payments.broadcast import send_one
from payments.figures import eur, line_amount, owed, wallet_balance
from payments.models import Wallet, Withdrawal
from payments.networks import explorer_url, get_network

log = logging.getLogger(__name__)


def _context(request: HouseholdRequest, **extra) -> dict:
    household, now = request.household, timezone.now()
    owing = eur(HourlyUsage.objects.filter(owed(), household_id=household.pk).aggregate(t=Sum(line_amount()))["t"])
    history = list(Withdrawal.objects.filter(household=household).order_by("-created_at", "-pk")[:20])
    for withdrawal in history:
        withdrawal.explorer_url = explorer_url(withdrawal.txid)
    return {
        "household": household,
        "closed_at": household.closed_at,
        "balance": wallet_balance(Wallet.objects.filter(household=household).first(), now),
        "owed": owing if owing > 0 else None,
        "credit": -owing if owing < 0 else None,
        "network": withdrawals.network_label(),
        "withdrawals": history,
        "tz": household.timezone,
        **extra,
    }


@require_GET
@household_required
def account_page(request: HouseholdRequest) -> HttpResponse:
    return render(request, "payments/withdrawal.html", _context(request))


@require_POST
@household_required
def close(request: HouseholdRequest) -> HttpResponse:
    if request.POST.get("confirm") != "yes":
        messages.error(request, _("Tick the box to confirm that you want to close your account. Nothing changed."))
        return redirect("account-close")
    closed_at = close_account(request.household.pk, now=timezone.now(), acting_user=request.user)
    messages.success(
        request,
        _("Your account closes at %(hour)s. Hours until then are paid as usual; then withdraw your balance.")
        % {"hour": timezone.localtime(closed_at, timezone=zone(request.household.timezone)).strftime("%Y-%m-%d %H:%M")},
    )
    return redirect("account-close")


@require_POST
@household_required
def preview(request: HouseholdRequest) -> HttpResponse:
    if request.household.closed_at is None:
        return _refused(request, _("Close your account first: the balance is withdrawn when the account closes."))
    try:
        shown = withdrawals.preview(request.household, request.POST.get("address", ""), timezone.now())
    except withdrawals.WithdrawalRefused as refusal:
        return _refused(request, str(refusal), address=request.POST.get("address", "")[:100])
    return render(request, "payments/withdrawal.html", _context(request, preview=shown))


@require_POST
@household_required
def confirm(request: HouseholdRequest) -> HttpResponse:
    if request.household.closed_at is None:
        return _refused(request, _("Close your account first: the balance is withdrawn when the account closes."))
    try:
        outcome = withdrawals.withdraw(
            request.household,
            request.POST.get("token", ""),
            acting_user=request.user,
            source=Withdrawal.Source.HOUSEHOLD,
        )
    except withdrawals.WithdrawalRefused as refusal:
        return _refused(request, str(refusal))
    except DatabaseError:
        log.warning("withdrawal_busy household=%s", request.household.pk, exc_info=True)
        return _refused(request, _("Your wallet was busy with another payment. Nothing was sent; please try again."))
    if outcome.new:
        # After commit: recorded and its coins reserved, so a crash here leaves it for the sweeper.
        send_one(Withdrawal, outcome.withdrawal.pk, get_network())
    return redirect("withdrawal-detail", pk=outcome.withdrawal.pk)


@require_GET
@household_required
def withdrawal_detail(request: HouseholdRequest, pk: int) -> HttpResponse:
    withdrawal = get_object_or_404(Withdrawal, pk=pk, household=request.household)
    withdrawal.explorer_url = explorer_url(withdrawal.txid)
    context = {"withdrawal": withdrawal, "tz": request.household.timezone}
    return render(request, "payments/withdrawal_detail.html", context)


def _refused(request: HouseholdRequest, message: str, **extra) -> HttpResponse:
    return render(request, "payments/withdrawal.html", _context(request, error=message, **extra), status=400)
