"""The local ledger's blocks and transactions: listed in the admin index only on the local network."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin

from meters.adminkit import ReadOnlyAdmin, ReadOnlyInline, count_of
from payments.admin.columns import raw_hex
from payments.models import LedgerBlock, LedgerOutput, LedgerTransaction


class LocalLedgerAdmin(ReadOnlyAdmin):
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
