"""The household's wallet: where to deposit, what it holds, what came in and went out."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

from meters.access import HouseholdRequest, household_required
from payments.figures import wallet_balance
from payments.history import reserved_satoshis, wallet_history
from payments.qr import qr_svg
from payments.wallets import open_wallet


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
    """The deposit address as a QR code.

    It encodes the bare address, not a ``bitcoin:`` URI: a deposit has no amount or label to carry,
    every BSV wallet's scanner takes a bare address, while ``bitcoin:`` is the scheme BTC wallets
    register for and would invite paying with the wrong coin.

    Private and revalidated every time: the URL is the same for every household, so a browser shared by
    two households must never show the first one's code to the second (a deposit to the wrong wallet).
    """
    wallet = open_wallet(request.household)
    return HttpResponse(qr_svg(wallet.address), content_type="image/svg+xml")
