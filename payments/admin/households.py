"""What payments adds to a household's admin page: its wallet and its arrears.

A mixin, not a registration: energypay/admin.py composes it with meters' HouseholdAdmin on the top
floor, the one place that may know both apps.
"""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from meters.models import Household
from payments.admin.columns import ArrearsColumn, ArrearsFilter
from payments.models import Wallet
from payments.wallets import open_wallet


class WalletColumns(ArrearsColumn):
    """Every household gets its wallet when staff create it; the list shows the address and the arrears."""

    list_display = ["wallet_address", "arrears"]
    list_select_related = ["wallet"]
    list_filter = [ArrearsFilter]
    readonly_fields = ["wallet_link", "arrears"]
    arrears_of = "pk"

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        open_wallet(obj)  # in the admin's transaction: a household never exists without its wallet

    @admin.display(description="wallet")
    def wallet_address(self, household: Household) -> str:
        try:
            return household.wallet.address
        except Wallet.DoesNotExist:
            return "-"  # opened by the next hourly run

    @admin.display(description="wallet")
    def wallet_link(self, household: Household) -> str:
        if household.pk is None:
            return "opened when the household is saved"
        try:
            wallet = household.wallet
        except Wallet.DoesNotExist:
            return "not opened yet (the next hourly run opens it)"
        url = reverse("admin:payments_wallet_change", args=[wallet.pk])
        return format_html('<a href="{}">{}</a>', url, wallet.address)
