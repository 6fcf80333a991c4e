"""The ARC callback log: every delivery to /api/v1/arc/callback, with what it did (payments/arc_callbacks.py)."""

from __future__ import annotations

from django.contrib import admin
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from meters.adminkit import ReadOnlyAdmin
from payments.models import ArcCallback


@admin.register(ArcCallback)
class ArcCallbackAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "txid", "tx_status", "block_height", "outcome", "payment", "detail"]
    list_filter = ["outcome", "tx_status", "payment_kind"]
    search_fields = ["=txid"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    fields = [
        "received_at",
        "txid",
        "tx_status",
        "sent_at",
        "block_height",
        "outcome",
        "detail",
        "payment",
        "body",
    ]
    readonly_fields = fields

    @admin.display(description="payment")
    def payment(self, callback: ArcCallback) -> str:
        if not callback.payment_id:
            return "-"
        name = {"settlement": "settlement", "community_pass": "communitypass"}.get(callback.payment_kind)
        label = f"{callback.payment_kind.replace('_', ' ')} {callback.payment_id}"
        try:
            url = reverse(f"admin:payments_{name}_change", args=[callback.payment_id])
        except NoReverseMatch:
            return label
        return format_html('<a href="{}">{}</a>', url, label)
