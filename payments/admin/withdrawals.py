"""Withdrawals of a wallet's balance: the list staff follow (read-only), and the wallet actions that close an
account and withdraw its balance, each behind a confirmation page, each recorded in the audit trail."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db import DatabaseError
from django.template.response import TemplateResponse
from django.utils import timezone

from meters.adminkit import ReadOnlyAdmin
from meters.contracts import close_account
from payments import withdrawals
from payments.admin.columns import OutgoingPaymentColumns
from payments.broadcast import send_one
from payments.models import Wallet, Withdrawal
from payments.networks import get_network

TEMPLATE = "admin/payments/withdrawal.html"


@admin.register(Withdrawal)
class WithdrawalAdmin(OutgoingPaymentColumns, ReadOnlyAdmin):
    """Balances sent out of wallets (closing accounts, refunds). Made from the wallets' "Withdraw balance" action."""

    list_display = [
        "created_at",
        "household",
        "source",
        "address",
        "satoshis",
        "fee_satoshis",
        "state_badge",
        "short_txid",
    ]
    list_filter = ["source", "state"]
    date_hierarchy = "created_at"
    search_fields = ["txid__exact", "address__exact", "household__name", "household__user__email"]
    list_select_related = ["household"]
    fields = [
        "household",
        "source",
        "requested_by",
        "address",
        "satoshis",
        "fee_satoshis",
        "state_badge",
        "detail",
        "broadcast_attempts",
        "created_at",
        "confirmed_at",
        "txid_link",
        "raw_tx_text",
    ]
    readonly_fields = fields


class WithdrawForm(forms.Form):
    address = forms.CharField(max_length=100, label="Send the balance to address", strip=True)


class WithdrawalActions:
    """The wallet admin's actions (payments/admin/wallets.py), one wallet at a time, each with a confirmation step."""

    @admin.action(
        description="Close the household's account (nothing billed from the next hour)", permissions=["operate"]
    )
    def close_account_action(self, request, queryset):
        wallet = self._one(request, queryset)
        if wallet is None:
            return None
        household = wallet.household
        if request.POST.get("step") == "confirm":
            closed_at = close_account(household.pk, now=timezone.now(), acting_user=request.user)
            self.message_user(
                request, f"{household}: account closed from {closed_at:%Y-%m-%d %H:%M} UTC.", messages.SUCCESS
            )
            return None
        return self._page(request, wallet, "close_account_action", mode="close")

    @admin.action(description="Withdraw the balance to an address…", permissions=["operate"])
    def withdraw_balance(self, request, queryset):
        wallet = self._one(request, queryset)
        if wallet is None:
            return None
        household = wallet.household
        step = request.POST.get("step")
        if step == "confirm":
            try:
                outcome = withdrawals.withdraw(
                    household, request.POST.get("token", ""), acting_user=request.user, source=Withdrawal.Source.STAFF
                )
            except withdrawals.WithdrawalRefused as refusal:
                self.message_user(request, f"{household}: {refusal} Nothing was sent.", messages.ERROR)
                return None
            except DatabaseError:
                self.message_user(
                    request, f"{household}: the wallet was busy; nothing was sent. Try again.", messages.ERROR
                )
                return None
            made = outcome.withdrawal
            if outcome.new:  # after the commit; a crash here leaves it signed for the sweeper
                made.state = send_one(Withdrawal, made.pk, get_network()) or made.state
            self.message_user(
                request,
                f"{household}: {made.satoshis:,} sat to {made.address} "
                + (
                    f"sent ({made.get_state_display().lower()})."
                    if outcome.new
                    else "had already been confirmed; nothing more was sent."
                ),
                messages.SUCCESS,
            )
            return None
        form = WithdrawForm(request.POST if step == "preview" else None)
        shown = None
        if form.is_valid():
            try:
                shown = withdrawals.preview(household, form.cleaned_data["address"], timezone.now())
            except withdrawals.WithdrawalRefused as refusal:
                form.add_error("address", str(refusal))
        return self._page(request, wallet, "withdraw_balance", mode="withdraw", form=form, preview=shown)

    def _one(self, request, queryset) -> Wallet | None:
        wallets = list(queryset.select_related("household")[:2])
        if len(wallets) != 1:
            self.message_user(request, "Select exactly one wallet; nothing was done.", messages.ERROR)
            return None
        return wallets[0]

    def _page(self, request, wallet: Wallet, action: str, **context) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"{wallet.household}: "
            + ("close the account" if context["mode"] == "close" else "withdraw the balance"),
            "opts": self.opts,
            "wallet": wallet,
            "household": wallet.household,
            "network": withdrawals.network_label(),
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            **context,
        }
        return TemplateResponse(request, TEMPLATE, context)
