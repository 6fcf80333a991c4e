"""The household's wallet: where to deposit, what it holds, what came in and went out."""

from __future__ import annotations

from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from meters.access import HouseholdRequest, household_required
from payments.bip21 import payment_uri
from payments.figures import wallet_balance
from payments.history import reserved_satoshis, wallet_history
from payments.qr import qr_svg
from payments.wallets import open_wallet

MAX_SATS = 21_000_000 * 100_000_000


@require_safe
@household_required
def wallet_page(request: HouseholdRequest) -> HttpResponse:
    # Opening a wallet on a GET is safe: it is idempotent, derives a public address and moves no money;
    # a household that signs up before the hourly run opens it can deposit at once.
    wallet = open_wallet(request.household)
    context = {
        "wallet": wallet,
        "balance": wallet_balance(wallet, timezone.now()),
        "reserved": reserved_satoshis(wallet),
        "history": wallet_history(wallet),
        "tz": request.household.timezone,
    }
    return render(request, "payments/wallet.html", context)


@require_safe
@household_required
@cache_control(private=True, no_cache=True)
def wallet_qr(request: HouseholdRequest) -> HttpResponse:
    """The deposit address as a QR code; with ``?sats=N``, the BIP21 URI asking for N satoshis (the top-up page).

    Without an amount it encodes the bare address: every BSV wallet's scanner takes one. With an
    amount it encodes ``bitcoin:<address>?amount=<BSV>`` (payments/bip21.py), so the wallet app
    fills the amount in; BSV wallets read the ``bitcoin:`` scheme BSV inherited.

    Private and revalidated every time: the URL is the same for every household, so a browser shared by
    two households must never show the first one's code to the second (a deposit to the wrong wallet).
    """
    sats = request.GET.get("sats")
    if sats is not None and not (sats.isascii() and sats.isdigit() and 0 < int(sats) <= MAX_SATS):
        return HttpResponseBadRequest(
            gettext("The amount must be a whole number of satoshis, from 1 to 21 million BSV."),
            content_type="text/plain; charset=utf-8",
        )
    wallet = open_wallet(request.household)
    data = payment_uri(wallet.address, int(sats)) if sats is not None else wallet.address
    return HttpResponse(qr_svg(data), content_type="image/svg+xml")
