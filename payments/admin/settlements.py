"""Outgoing payments: settlements (what each household paid for its hours) and community passes."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from django.contrib import admin, messages

from meters.adminkit import ReadOnlyAdmin, ReadOnlyInline, plural
from meters.audit import record_action
from payments.admin.actions import ReadOnlyWithActions
from payments.admin.columns import OutgoingPaymentColumns
from payments.broadcast import send_one
from payments.models import CommunityPass, Settlement, SettlementLine


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


@admin.register(Settlement)
class SettlementAdmin(OutgoingPaymentColumns, ReadOnlyWithActions, admin.ModelAdmin):
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

    @admin.display(description="price quote")
    def quote_text(self, settlement: Settlement) -> str:
        quote = settlement.quote
        return f"{quote.bsv_eur} EUR/BSV from {quote.source}, fetched {quote.fetched_at:%Y-%m-%d %H:%M:%S} UTC"

    @admin.action(description="Rebroadcast (signed settlements)", permissions=["operate"])
    def rebroadcast(self, request, queryset):
        settlements = self.selected_rows(request, queryset)
        if settlements is None:
            return
        signed = [s.pk for s in settlements if s.state == Settlement.State.SIGNED]
        network = self.network()
        # Sending the same raw transaction twice is harmless; send_one re-checks the state.
        outcomes: Counter[str] = Counter()
        for settlement in settlements:
            if settlement.state == Settlement.State.SIGNED:
                state = Settlement.State(send_one(Settlement, settlement.pk, network)).label.lower()
                outcomes[state] += 1
                record_action(settlement, "settlement.rebroadcast", f"Rebroadcast: {state}", actor=request.user)
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


@admin.register(CommunityPass)
class CommunityPassAdmin(OutgoingPaymentColumns, ReadOnlyAdmin):
    """Paid access to the community comparison, bought from a wallet or over HTTP 402."""

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
