"""The payments admin: wallets and their coins, settlements, prices and the local ledger.

Everything here is read-only: money moves only through the functions that hold the locks
(payments/wallets.py, payments/settlement.py), which the actions below call. No page shows key
material: none is stored, and no field or action derives a private key.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_permission_codename
from django.db import DatabaseError
from django.db.models import (
    BigIntegerField,
    Count,
    DecimalField,
    Field,
    IntegerField,
    OuterRef,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from lib.money import SATS_PER_BSV, satoshis_to_eur
from meters.admin import HouseholdAdmin as MetersHouseholdAdmin
from meters.admin import NoEditing, ReadOnlyAdmin, ReadOnlyInline, count_of
from meters.models import HourlyUsage, Household
from payments import figures, keys
from payments.models import (
    CommunityPass,
    LedgerBlock,
    LedgerOutput,
    LedgerTransaction,
    PriceQuote,
    Settlement,
    SettlementLine,
    Utxo,
    Wallet,
)
from payments.networks import get_network
from payments.networks.local import LocalLedger
from payments.settlement import broadcast_settlement
from payments.signing import settle_household
from payments.wallets import open_wallet, sync_coins

log = logging.getLogger(__name__)

# Actions run in the request: each selected household signs and broadcasts, each wallet asks the network.
MAX_PER_ACTION = 100
CENTS = Decimal("0.01")
PAID = (Settlement.State.BROADCAST, Settlement.State.SEEN, Settlement.State.CONFIRMED)
EXPLORERS = {"testnet": "https://test.whatsonchain.com/tx/", "mainnet": "https://whatsonchain.com/tx/"}


# --- Shared pieces --------------------------------------------------------------------------------


def arrears_eur(household: str, now: datetime) -> Coalesce:
    """EUR the household is in arrears with at ``now`` (payments/figures.py: the status page's figure too).

    A correlated subquery (served by the index on open usage lines), so the changelist's COUNT(*)
    leaves it out and only the rows of the page shown compute it.
    """
    lines = HourlyUsage.objects.filter(figures.in_arrears(now), household=OuterRef(household))
    total = lines.order_by().values("household").annotate(total=Sum("cost_eur")).values("total")
    return Coalesce(Subquery(total), Decimal("0"), output_field=DecimalField(max_digits=15, decimal_places=6))


def available_coins(aggregate: Sum | Count, output_field: Field) -> Coalesce:
    """An aggregate over the wallet's available coins, as a correlated subquery (the wallet-state index serves it)."""
    coins = Utxo.objects.filter(wallet=OuterRef("pk"), state=Utxo.State.AVAILABLE).order_by().values("wallet")
    return Coalesce(Subquery(coins.annotate(value=aggregate).values("value")), 0, output_field=output_field)


def arrears_text(arrears: Decimal | None) -> str:
    # Quantized again: SQLite hands a subquery's SUM back through a float.
    return f"owes {figures.eur(arrears)} EUR" if arrears else "-"


def eur_text(amount: Decimal) -> str:
    return f"{amount.quantize(CENTS, rounding=ROUND_HALF_UP)} EUR"


def current_quote(request: HttpRequest) -> PriceQuote | None:
    """The usable quote, looked up once per request: the page title and every row use the same one."""
    if not hasattr(request, "_payments_quote"):
        request._payments_quote = figures.usable_quote(timezone.now())
    return request._payments_quote


def households_owing(household_ids: set[int], period_end: datetime) -> list[int]:
    owing = HourlyUsage.objects.filter(figures.owed(before=period_end), household_id__in=household_ids)
    return sorted(set(owing.values_list("household_id", flat=True)))


def explorer_link(txid: str) -> str:
    base = EXPLORERS.get(settings.BSV_NETWORK)
    if not txid or base is None:
        return txid or "-"
    return format_html('<a href="{}{}" rel="noopener" target="_blank">{}</a>', base, txid, txid)


def raw_hex(raw: str) -> str:
    return format_html('<pre style="white-space: pre-wrap; word-break: break-all; max-width: 60em">{}</pre>', raw)


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class ReadOnlyWithActions(NoEditing):
    """No page edits a row; the actions move money, so they need the model's change permission."""

    def has_operate_permission(self, request) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.{get_permission_codename('change', opts)}")

    def selected_rows(self, request, queryset: QuerySet) -> list | None:
        """The selected rows, or None (with a message) when there are more than one action should handle."""
        rows = list(queryset.order_by("pk")[: MAX_PER_ACTION + 1])
        if len(rows) > MAX_PER_ACTION:
            self.message_user(request, f"Select at most {MAX_PER_ACTION} rows; nothing was done.", messages.ERROR)
            return None
        return rows

    def retry_households(self, request, household_ids: set[int]) -> None:
        """Settle the households that owe something now and broadcast what was signed; report the outcomes."""
        now = timezone.now()
        period_end = figures.closed_period_end(now)
        owing = households_owing(household_ids, period_end)
        if not owing:
            self.message_user(request, "Nothing to retry: no selected household owes anything.", messages.INFO)
            return
        network = get_network()
        tally: Counter[str] = Counter()
        for household_id in owing:
            try:
                result = settle_household(household_id, period_end, now)
            except DatabaseError:
                # A concurrent run claimed the same lines or coins; it rolled back and paid nothing.
                log.warning("admin_retry_conflict household=%s", household_id, exc_info=True)
                tally["busy"] += 1
                continue
            if result.settlement_id is None:
                tally[result.status] += 1
                continue
            tally[broadcast_settlement(result.settlement_id, network)] += 1
        paid = sum(tally[state] for state in PAID)
        parts = [
            f"{paid} paid",
            f"{tally['arrears']} still in arrears (the wallet cannot pay)",
            f"{tally[Settlement.State.SIGNED]} signed but not yet accepted (the sweeper sends them again)",
            f"{tally[Settlement.State.REJECTED] + tally[Settlement.State.DOUBLE_SPEND]} refused by the network",
            f"{tally['deferred']} deferred (no current BSV/EUR price)",
            f"{tally['nothing']} with less than a satoshi to pay",
            f"{tally['busy']} busy with another run (try again)",
        ]
        text = f"Retried {plural(len(owing), 'household')}: {', '.join(p for p in parts if not p.startswith('0 '))}."
        skipped = len(household_ids) - len(owing)
        if skipped:
            text += f" Skipped {skipped} that owed nothing."
        self.message_user(request, text, messages.SUCCESS if paid == len(owing) else messages.WARNING)


# --- Wallets --------------------------------------------------------------------------------------


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


class ArrearsFilter(admin.SimpleListFilter):
    title = "arrears"
    parameter_name = "arrears"

    def lookups(self, request, model_admin):
        return [("yes", "In arrears"), ("no", "Up to date")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(arrears_eur__gt=0)
        if self.value() == "no":
            return queryset.filter(arrears_eur=0)
        return queryset


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
class WalletAdmin(ReadOnlyWithActions, admin.ModelAdmin):
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
    actions = ["sync_coins_action", "retry_now", "fund_from_faucet"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                balance_sats=available_coins(Sum("satoshis"), BigIntegerField()),
                coin_count=available_coins(Count("pk"), IntegerField()),
                arrears_eur=arrears_eur("household", timezone.now()),
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

    @admin.display(description="arrears", ordering="arrears_eur")
    def arrears(self, wallet: Wallet) -> str:
        return arrears_text(wallet.arrears_eur)

    @admin.display(description="coin history")
    def coins_link(self, wallet: Wallet) -> str:
        url = reverse("admin:payments_utxo_changelist") + f"?wallet__id__exact={wallet.pk}"
        return format_html('<a href="{}">every coin of this wallet, spent ones too</a>', url)

    @admin.action(description="Sync coins from the network", permissions=["operate"])
    def sync_coins_action(self, request, queryset):
        wallets = self.selected_rows(request, queryset)
        if wallets is None:
            return
        network = get_network()
        found, failed = 0, 0
        for wallet in wallets:
            try:
                found += sync_coins(wallet, network)
            except Exception:  # an explorer or node error: report it, go on with the other wallets
                log.exception("admin_sync_failed wallet=%s", wallet.pk)
                failed += 1
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
            ledger.mine()  # confirmed at once: settlement spends only confirmed deposits
            for wallet in wallets:
                sync_coins(wallet, ledger)
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


# --- Households: every one gets its wallet when staff create it -----------------------------------

admin.site.unregister(Household)


@admin.register(Household)
class HouseholdAdmin(MetersHouseholdAdmin):
    list_display = [*MetersHouseholdAdmin.list_display, "wallet_address", "arrears"]
    list_select_related = [*MetersHouseholdAdmin.list_select_related, "wallet"]
    list_filter = [*MetersHouseholdAdmin.list_filter, ArrearsFilter]
    readonly_fields = [*MetersHouseholdAdmin.readonly_fields, "wallet_link", "arrears"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(arrears_eur=arrears_eur("pk", timezone.now()))

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

    @admin.display(description="arrears", ordering="arrears_eur")
    def arrears(self, household: Household) -> str:
        return arrears_text(getattr(household, "arrears_eur", None))


# --- Settlements ----------------------------------------------------------------------------------


class SettlementLineInline(ReadOnlyInline):
    model = SettlementLine
    verbose_name_plural = "usage paid"
    fields = ["hour", "meter", "kwh", "rate", "amount", "released"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("usage__meter").order_by("usage__hour_start", "pk")

    @admin.display(description="hour (UTC)")
    def hour(self, line: SettlementLine) -> str:
        return f"{line.usage.hour_start:%Y-%m-%d %H:%M}"

    @admin.display(description="meter")
    def meter(self, line: SettlementLine) -> str:
        return str(line.usage.meter) if line.usage.meter_id else "standing charge"

    @admin.display(description="kWh")
    def kwh(self, line: SettlementLine) -> Decimal:
        return line.usage.kwh

    @admin.display(description="rate (EUR/kWh)")
    def rate(self, line: SettlementLine) -> Decimal | None:
        return line.usage.rate

    @admin.display(description="EUR")
    def amount(self, line: SettlementLine) -> Decimal:
        return line.eur


STATE_COLOURS = {
    Settlement.State.SIGNED: "#8a6d00",
    Settlement.State.BROADCAST: "#8a6d00",
    Settlement.State.SEEN: "#1f6f8b",
    Settlement.State.CONFIRMED: "#2e7d32",
    Settlement.State.REJECTED: "#c62828",
    Settlement.State.DOUBLE_SPEND: "#c62828",
}


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyWithActions, admin.ModelAdmin):
    list_display = [
        "household",
        "period",
        "energy",
        "amount",
        "satoshis",
        "fee_satoshis",
        "state_badge",
        "short_txid",
        "created_at",
    ]
    list_filter = ["state"]
    date_hierarchy = "created_at"
    search_fields = ["txid__exact", "household__name", "household__user__email"]
    list_select_related = ["household"]
    show_full_result_count = False  # a settlement an hour per household: never count them all twice
    fieldsets = [
        (None, {"fields": ["household", "state_badge", "detail", "broadcast_attempts", "created_at", "confirmed_at"]}),
        ("What it paid", {"fields": ["period", "energy", "amount", "quote_text", "satoshis", "fee_satoshis"]}),
        ("Transaction", {"fields": ["txid_link", "raw_tx_text"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]
    inlines = [SettlementLineInline]
    actions = ["rebroadcast", "retry_now"]

    @admin.display(description="period (UTC)", ordering="period_start")
    def period(self, settlement: Settlement) -> str:
        return f"{settlement.period_start:%Y-%m-%d %H:%M} to {settlement.period_end:%Y-%m-%d %H:%M}"

    @admin.display(description="kWh", ordering="kwh")
    def energy(self, settlement: Settlement) -> Decimal:
        return settlement.kwh

    @admin.display(description="EUR", ordering="eur")
    def amount(self, settlement: Settlement) -> Decimal:
        return settlement.eur

    @admin.display(description="state", ordering="state")
    def state_badge(self, settlement: Settlement) -> str:
        return format_html(
            '<strong style="color: {}">{}</strong>',
            STATE_COLOURS.get(settlement.state, "inherit"),
            settlement.get_state_display(),
        )

    @admin.display(description="txid")
    def short_txid(self, settlement: Settlement) -> str:
        return format_html('<code title="{}">{}…</code>', settlement.txid, settlement.txid[:12])

    @admin.display(description="txid")
    def txid_link(self, settlement: Settlement) -> str:
        return explorer_link(settlement.txid)

    @admin.display(description="price quote")
    def quote_text(self, settlement: Settlement) -> str:
        quote = settlement.quote
        return f"{quote.bsv_eur} EUR/BSV from {quote.source}, fetched {quote.fetched_at:%Y-%m-%d %H:%M:%S} UTC"

    @admin.display(description="raw transaction (hex)")
    def raw_tx_text(self, settlement: Settlement) -> str:
        return raw_hex(settlement.raw_tx)

    @admin.action(description="Rebroadcast (signed settlements)", permissions=["operate"])
    def rebroadcast(self, request, queryset):
        settlements = self.selected_rows(request, queryset)
        if settlements is None:
            return
        signed = [s.pk for s in settlements if s.state == Settlement.State.SIGNED]
        network = get_network()
        # Sending the same raw transaction twice is harmless; broadcast_settlement re-checks the state.
        outcomes = Counter(Settlement.State(broadcast_settlement(pk, network)).label.lower() for pk in signed)
        skipped = len(settlements) - len(signed)
        told = ", ".join(f"{count} {state}" for state, count in sorted(outcomes.items()))
        text = f"Broadcast {plural(len(signed), 'settlement')}" + (f": {told}." if told else ".")
        if skipped:
            text += f" Skipped {skipped} not in state signed."
        self.message_user(request, text, messages.SUCCESS if signed else messages.WARNING)

    @admin.action(description="Retry now (households of failed settlements or in arrears)", permissions=["operate"])
    def retry_now(self, request, queryset):
        settlements = self.selected_rows(request, queryset)
        if settlements is not None:
            self.retry_households(request, {s.household_id for s in settlements})


# --- Community passes: paid access to the community comparison -------------------------------------


@admin.register(CommunityPass)
class CommunityPassAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "source",
        "household",
        "payer",
        "satoshis",
        "state_badge",
        "short_txid",
        "valid_until",
    ]
    list_filter = ["source", "state"]
    date_hierarchy = "created_at"
    search_fields = ["txid__exact", "payer__exact", "household__name", "household__user__email"]
    list_select_related = ["household"]
    show_full_result_count = False
    fields = [
        "source",
        "household",
        "payer",
        "state_badge",
        "detail",
        "broadcast_attempts",
        "updated_at",
        "satoshis",
        "fee_satoshis",
        "created_at",
        "valid_until",
        "txid_link",
        "raw_tx_text",
    ]
    readonly_fields = fields

    @admin.display(description="state", ordering="state")
    def state_badge(self, community_pass: CommunityPass) -> str:
        return format_html(
            '<strong style="color: {}">{}</strong>',
            STATE_COLOURS.get(community_pass.state, "inherit"),
            community_pass.get_state_display(),
        )

    @admin.display(description="txid")
    def short_txid(self, community_pass: CommunityPass) -> str:
        return format_html('<code title="{}">{}…</code>', community_pass.txid, community_pass.txid[:12])

    @admin.display(description="txid")
    def txid_link(self, community_pass: CommunityPass) -> str:
        return explorer_link(community_pass.txid)

    @admin.display(description="raw transaction (hex)")
    def raw_tx_text(self, community_pass: CommunityPass) -> str:
        return raw_hex(community_pass.raw_tx)


# --- Prices and the local ledger ------------------------------------------------------------------


@admin.register(PriceQuote)
class PriceQuoteAdmin(ReadOnlyAdmin):
    list_display = ["fetched_at", "source", "bsv_eur"]
    list_filter = ["source"]
    show_full_result_count = False


class LocalLedgerAdmin(ReadOnlyAdmin):
    """The local ledger's tables: listed in the admin index only on the local network."""

    def has_module_permission(self, request) -> bool:
        return settings.BSV_NETWORK == "local" and super().has_module_permission(request)


class LedgerOutputInline(ReadOnlyInline):
    model = LedgerOutput
    fk_name = "transaction"
    fields = ["vout", "satoshis", "address", "spent_by"]
    readonly_fields = fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("spent_by").order_by("vout")


@admin.register(LedgerBlock)
class LedgerBlockAdmin(LocalLedgerAdmin):
    list_display = ["height", "mined_at", "transactions"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(tx_count=count_of(LedgerTransaction, "block"))

    @admin.display(ordering="tx_count")
    def transactions(self, block: LedgerBlock) -> int:
        return block.tx_count


@admin.register(LedgerTransaction)
class LedgerTransactionAdmin(LocalLedgerAdmin):
    list_display = ["txid", "block", "fee", "is_faucet", "accepted_at"]
    list_filter = ["is_faucet"]
    search_fields = ["txid__exact"]
    list_select_related = ["block"]
    show_full_result_count = False
    fields = ["txid", "block", "fee", "is_faucet", "accepted_at", "raw_text"]
    readonly_fields = fields
    inlines = [LedgerOutputInline]

    @admin.display(description="raw transaction (hex)")
    def raw_text(self, tx: LedgerTransaction) -> str:
        return raw_hex(tx.raw)
