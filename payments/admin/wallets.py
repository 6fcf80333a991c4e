"""Wallets and their coins: balances, arrears, and the actions that sync, retry and (locally) fund them."""

from __future__ import annotations

import logging
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import BigIntegerField, Count, Field, IntegerField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from lib.money import SATS_PER_BSV, satoshis_to_eur
from meters.adminkit import ReadOnlyAdmin, ReadOnlyInline, plural
from meters.audit import AuditHistory, record_action
from payments import figures, keys
from payments.admin.actions import ReadOnlyWithActions
from payments.admin.columns import ArrearsColumn, ArrearsFilter, eur_text
from payments.admin.withdrawals import WithdrawalActions
from payments.models import PriceQuote, Utxo, Wallet
from payments.networks.local import LocalLedger

log = logging.getLogger(__name__)


def available_coins(aggregate: Sum | Count, output_field: Field) -> Coalesce:
    """An aggregate over the wallet's available coins, as a correlated subquery (the wallet-state index serves it)."""
    coins = Utxo.objects.filter(wallet=OuterRef("pk"), state=Utxo.State.AVAILABLE).order_by().values("wallet")
    return Coalesce(Subquery(coins.annotate(value=aggregate).values("value")), 0, output_field=output_field)


def current_quote(request: HttpRequest) -> PriceQuote | None:
    """The usable quote, looked up once per request: the page title and every row use the same one."""
    if not hasattr(request, "_payments_quote"):
        request._payments_quote = figures.usable_quote(timezone.now())
    return request._payments_quote


class UtxoInline(ReadOnlyInline):
    model = Utxo
    verbose_name_plural = "unspent coins"
    # raw_parent is left out: a whole parent transaction per row.
    fields = ["txid", "vout", "satoshis", "state", "confirmed", "reserved_by_link"]
    readonly_fields = fields

    def get_queryset(self, request):
        # Spent coins pile up with every settlement (about one a day per wallet); the coins
        # list has them all. Here, only what the wallet holds.
        return super().get_queryset(request).exclude(state=Utxo.State.SPENT).order_by("created_at", "pk")

    @admin.display(description="reserved by")
    def reserved_by_link(self, coin: Utxo) -> str:
        if coin.reserved_by_id is None:
            return "-"
        url = reverse("admin:payments_settlement_change", args=[coin.reserved_by_id])
        return format_html('<a href="{}">settlement {}</a>', url, coin.reserved_by_id)


class FaucetForm(forms.Form):
    bsv = forms.DecimalField(
        label="BSV per wallet",
        min_value=Decimal("0.00000001"),
        max_value=Decimal("1000"),
        decimal_places=8,
        initial=Decimal("0.1"),
        help_text="Local ledger money, out of thin air. 0.1 BSV = 10,000,000 satoshis.",
    )


@admin.register(Wallet)
class WalletAdmin(AuditHistory, ArrearsColumn, WithdrawalActions, ReadOnlyWithActions, admin.ModelAdmin):
    list_display = ["household", "address", "balance", "balance_eur", "coins", "arrears"]
    list_filter = [ArrearsFilter]
    search_fields = ["household__name", "household__user__email", "address"]
    list_select_related = ["household"]
    show_full_result_count = False  # a second COUNT(*) over every wallet
    fields = [
        "household_link",
        "address",
        "key_path",
        "balance",
        "balance_eur",
        "coins",
        "arrears",
        "coins_link",
        "created_at",
    ]
    readonly_fields = fields
    inlines = [UtxoInline]
    actions = ["sync_coins_action", "retry_now", "fund_from_faucet", "withdraw_balance", "close_account_action"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                balance_sats=available_coins(Sum("satoshis"), BigIntegerField()),
                coin_count=available_coins(Count("pk"), IntegerField()),
            )
        )

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        quote = current_quote(request)
        for wallet in changelist.result_list:
            wallet.display_quote = quote
        return changelist

    def get_object(self, request, object_id, from_field=None):
        wallet = super().get_object(request, object_id, from_field)
        if wallet is not None:
            wallet.display_quote = current_quote(request)
        return wallet

    def changelist_view(self, request, extra_context=None):
        context = {
            "utility_address": keys.utility_address(),
            "bsv_network": settings.BSV_NETWORK,
            "quote": current_quote(request),
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra_context=context)

    def get_actions(self, request):
        actions = super().get_actions(request)
        if settings.BSV_NETWORK != "local":
            actions.pop("fund_from_faucet", None)
        return actions

    @admin.display(description="household")
    def household_link(self, wallet: Wallet) -> str:
        url = reverse("admin:meters_household_change", args=[wallet.household_id])
        return format_html('<a href="{}">{}</a>', url, wallet.household)

    @admin.display(description="key path")
    def key_path(self, wallet: Wallet) -> str:
        # Where the key derives from the master key; the key itself exists only while signing.
        return f"{keys.HOUSEHOLD_ACCOUNT}/0/{wallet.derivation_index}"

    @admin.display(description="balance (sat)", ordering="balance_sats")
    def balance(self, wallet: Wallet) -> int:
        return wallet.balance_sats

    @admin.display(description="balance (EUR)")
    def balance_eur(self, wallet: Wallet) -> str:
        quote = getattr(wallet, "display_quote", None)
        if quote is None:
            return "no current price"
        return eur_text(satoshis_to_eur(wallet.balance_sats, quote.bsv_eur))

    @admin.display(description="coins", ordering="coin_count")
    def coins(self, wallet: Wallet) -> int:
        return wallet.coin_count

    @admin.display(description="coin history")
    def coins_link(self, wallet: Wallet) -> str:
        url = reverse("admin:payments_utxo_changelist") + f"?wallet__id__exact={wallet.pk}"
        return format_html('<a href="{}">every coin of this wallet, spent ones too</a>', url)

    @admin.action(description="Sync coins from the network", permissions=["operate"])
    def sync_coins_action(self, request, queryset):
        wallets = self.selected_rows(request, queryset)
        if wallets is None:
            return
        network = self.network()
        found, failed = 0, 0
        for wallet in wallets:
            try:
                new = wallet.sync_coins(network)
            except Exception:  # an explorer or node error: report it, go on with the other wallets
                log.exception("admin_sync_failed wallet=%s", wallet.pk)
                failed += 1
                continue
            found += new
            record_action(wallet, "wallet.sync_coins", f"Synced coins: {plural(new, 'new coin')}", actor=request.user)
        level = messages.WARNING if failed else messages.SUCCESS
        note = f" {plural(failed, 'wallet')} could not be synced (see the logs)." if failed else ""
        self.message_user(
            request, f"Synced {plural(len(wallets) - failed, 'wallet')}: {plural(found, 'new coin')}.{note}", level
        )

    @admin.action(description="Retry payment now (households in arrears)", permissions=["operate"])
    def retry_now(self, request, queryset):
        wallets = self.selected_rows(request, queryset)
        if wallets is not None:
            self.retry_households(request, {w.household_id for w in wallets})

    @admin.action(description="Fund from faucet (local network)", permissions=["operate"])
    def fund_from_faucet(self, request, queryset):
        if settings.BSV_NETWORK != "local":
            self.message_user(request, "The faucet exists only on the local network.", messages.ERROR)
            return None
        wallets = self.selected_rows(request, queryset)
        if wallets is None:
            return None
        form = FaucetForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            satoshis = int(form.cleaned_data["bsv"] * SATS_PER_BSV)  # at most 8 places: exact
            ledger = LocalLedger()
            for wallet in wallets:
                ledger.fund(wallet.address, satoshis)
                summary = f"Funded from the local faucet: {satoshis:,} satoshis"
                record_action(wallet, "wallet.faucet", summary, actor=request.user, satoshis=satoshis)
            ledger.mine()  # confirmed at once: settlement spends only confirmed deposits
            for wallet in wallets:
                wallet.sync_coins(ledger)
            self.message_user(
                request, f"Funded {plural(len(wallets), 'wallet')} with {satoshis:,} satoshis each.", messages.SUCCESS
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Fund wallets from the faucet",
            "opts": self.opts,
            "form": form,
            "wallets": wallets,
            "action": "fund_from_faucet",
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/payments/fund_from_faucet.html", context)


@admin.register(Utxo)
class UtxoAdmin(ReadOnlyAdmin):
    list_display = ["txid", "vout", "wallet", "satoshis", "state", "confirmed", "reserved_by_id", "created_at"]
    list_filter = ["state", "confirmed"]
    search_fields = ["txid__exact", "wallet__address__exact"]
    list_select_related = ["wallet__household"]
    show_full_result_count = False
    fields = ["wallet", "txid", "vout", "satoshis", "state", "confirmed", "reserved_by", "created_at", "updated_at"]
    readonly_fields = fields
