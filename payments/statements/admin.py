"""Statements for staff: read-only documents with their PDF, re-sending, the month's totals and the month-end summary.

Nothing here edits or deletes a statement (``NoEditing``; the models refuse as well). The actions
that write something, a re-send (a new delivery, logged with who asked) and issuing from the
household list, need the "operate" permission. ``StatementActions`` is the household admin's part,
composed on the top floor (energypay/admin.py) like the wallet columns.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from datetime import date

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from lib.periods import add_months, first_of_month, local_date
from meters.adminkit import Operate, ReadOnlyAdmin, ReadOnlyInline, plural
from meters.audit import AuditHistory
from payments.admin.actions import ReadOnlyWithActions
from payments.statements import mail, rendering, summary
from payments.statements.issuing import issue_households
from payments.statements.models import (
    MIX_SOURCES,
    BillDisclosure,
    Distributor,
    InvoiceRecord,
    InvoiceRecordChain,
    RecordSubmission,
    RecordTransmission,
    Series,
    SeriesCounter,
    Statement,
    StatementDelivery,
    StatementLine,
    StatementPayment,
)
from payments.statements.verifactu import records

log = logging.getLogger(__name__)

MONTHS_SHOWN = 12  # month totals above the list


class MonthFilter(admin.SimpleListFilter):
    title = "month"
    parameter_name = "month"

    def lookups(self, request, model_admin):
        return [(f"{month:%Y-%m}", f"{month:%B %Y}") for month in summary.months_billed()[:36]]

    def queryset(self, request, queryset):
        month = parse_month(self.value())
        return queryset.filter(month=month) if month else queryset


def parse_month(text: str | None) -> date | None:
    try:
        year, month = (int(part) for part in (text or "").split("-"))
        return date(year, month, 1)
    except ValueError:
        return None


class StatementLineInline(ReadOnlyInline):
    model = StatementLine
    fields = ["position", "label", "quantity_text", "price_text", "base_eur", "exact_eur", "amount_eur", "key"]
    readonly_fields = fields

    @admin.display(description="line")
    def label(self, line: StatementLine) -> str:
        return line.label

    @admin.display(description="quantity")
    def quantity_text(self, line: StatementLine) -> str:
        return line.quantity_text

    @admin.display(description="price")
    def price_text(self, line: StatementLine) -> str:
        return line.price_text


class StatementPaymentInline(ReadOnlyInline):
    model = StatementPayment
    verbose_name_plural = "payments that paid the month's hours (at issue)"
    fields = ["paid_at", "settlement_link", "eur", "satoshis"]
    readonly_fields = fields

    @admin.display(description="settlement")
    def settlement_link(self, payment: StatementPayment) -> str:
        url = reverse("admin:payments_settlement_change", args=[payment.settlement_id])
        return format_html('<a href="{}"><code>{}</code></a>', url, payment.txid)


class StatementDeliveryInline(ReadOnlyInline):
    model = StatementDelivery
    verbose_name_plural = "mail deliveries"
    fields = ["created_at", "reason", "requested_by", "to", "state", "attempts", "sent_at", "last_error"]
    readonly_fields = fields

    @admin.display(description="state")
    def state(self, delivery: StatementDelivery) -> str:
        return delivery.skip_reason or delivery.state


@admin.register(Statement)
class StatementAdmin(ReadOnlyWithActions, admin.ModelAdmin):
    list_display = ["code", "title_text", "household", "month_text", "total", "issue_date", "mail_state", "pdf_link"]
    list_filter = [MonthFilter, "kind", "series", "rectification_type"]
    search_fields = ["code__exact", "household__name", "household__user__email"]
    list_select_related = ["household"]
    show_full_result_count = False
    ordering = ["-issued_at", "-pk"]
    fieldsets = [
        (None, {"fields": ["code", "title_text", "corrects", "household", "month_text", "period", "issued"]}),
        ("Rectificativa", {"fields": ["rectification_type", "rectification_method", "rectification_reason"]}),
        ("Parties (as at issue)", {"fields": ["issuer", "customer", "language"]}),
        ("Amounts", {"fields": ["energy_kwh", "net_eur", "tax_eur", "total_eur", "ledger"]}),
        ("Paid", {"fields": ["settled_eur", "unsettled_eur", "settlement_count", "settled_satoshis", "balance"]}),
        ("Documents", {"fields": ["pdf_link", "corrections_links"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]
    inlines = [StatementLineInline, StatementDeliveryInline, StatementPaymentInline]
    actions = ["resend"]

    def get_queryset(self, request):
        # EXISTS, not a join: the month totals aggregate this queryset, and a join would count a
        # statement once per delivery.
        sent = StatementDelivery.objects.filter(statement=OuterRef("pk"), sent_at__isnull=False)
        return super().get_queryset(request).annotate(sent=Exists(sent))

    @admin.display(description="document", ordering="kind")
    def title_text(self, statement: Statement) -> str:
        return statement.title

    @admin.display(description="month", ordering="month")
    def month_text(self, statement: Statement) -> str:
        return f"{statement.month:%Y-%m}" + (f" (revision {statement.revision})" if statement.revision else "")

    @admin.display(description="total", ordering="total_eur")
    def total(self, statement: Statement) -> str:
        return f"{statement.total_eur} {statement.currency}"

    @admin.display(description="mail")
    def mail_state(self, statement: Statement) -> str:
        return "sent" if getattr(statement, "sent", False) else "not yet"

    @admin.display(description="PDF")
    def pdf_link(self, statement: Statement) -> str:
        return format_html('<a href="{}">PDF</a>', reverse("admin:statements_statement_pdf", args=[statement.pk]))

    @admin.display(description="period")
    def period(self, statement: Statement) -> str:
        start, end = statement.period_start, statement.period_end
        return f"{start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC ({statement.timezone})"

    @admin.display(description="issued")
    def issued(self, statement: Statement) -> str:
        by = statement.issued_by or "beat / a command"
        return f"{statement.issue_date} ({statement.issued_at:%Y-%m-%d %H:%M:%S} UTC, by {by})"

    @admin.display(description="ledger covered (exact)")
    def ledger(self, statement: Statement) -> str:
        return f"cost {statement.ledger_cost_eur} EUR + tax {statement.ledger_tax_eur} EUR, {statement.ledger_kwh} kWh"

    @admin.display(description="balance at month end")
    def balance(self, statement: Statement) -> str:
        if statement.balance_at is None:
            return "-"
        eur = f" = {statement.balance_eur} EUR at {statement.balance_bsv_eur} EUR/BSV" if statement.balance_eur else ""
        return f"{statement.balance_satoshis:,} sat{eur} at {statement.balance_at:%Y-%m-%d %H:%M} UTC"

    @admin.display(description="corrected by")
    def corrections_links(self, statement: Statement) -> str:
        notes = list(statement.corrections.order_by("revision"))
        if not notes:
            return "-"
        links = [
            format_html('<a href="{}">{}</a>', reverse("admin:statements_statement_change", args=[n.pk]), n.code)
            for n in notes
        ]
        return format_html(", ".join(["{}"] * len(links)), *links)

    # --- Pages of its own: the PDF and the month-end summary ----------------------------------------

    def get_urls(self):
        own = [
            path("<int:pk>/pdf/", self.admin_site.admin_view(self.pdf_view), name="statements_statement_pdf"),
            path("summary/", self.admin_site.admin_view(self.summary_view), name="statements_statement_summary"),
        ]
        return own + super().get_urls()

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        statement = get_object_or_404(Statement.objects.select_related("corrects"), pk=pk)
        response = HttpResponse(rendering.pdf_bytes(statement), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{statement.file_stem}.pdf"'
        return response

    def summary_view(self, request: HttpRequest) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        months = summary.months_billed()
        month = parse_month(request.GET.get("month")) or (months[0] if months else None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Month-end summary",
            "opts": self.model._meta,
            "months": months,
            "month": month,
            "summary": summary.month_summary(month) if month else None,
        }
        return TemplateResponse(request, "admin/statements/summary.html", context)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["month_totals"] = month_totals(changelist.queryset)
        return response

    @admin.action(description="Send again by email (a new delivery)", permissions=["operate"])
    def resend(self, request, queryset):
        statements = self.selected_rows(request, queryset)
        if statements is None:
            return
        deliveries = [mail.resend(statement, acting_user=request.user) for statement in statements]
        queued = sum(1 for delivery in deliveries if not delivery.skip_reason)
        text = f"Queued {plural(queued, 'mail')}; beat sends it within a minute."
        if queued < len(deliveries):
            text += f" {len(deliveries) - queued} not queued: the household has no email address."
        self.message_user(request, text, messages.SUCCESS if queued == len(deliveries) else messages.WARNING)


def month_totals(queryset: QuerySet) -> list[dict]:
    """Per month of the rows the list shows (its filters applied): documents, households and money, newest first."""
    rows = (
        queryset.order_by()
        .values("month")
        .annotate(
            documents=Count("pk"),
            notes=Count("pk", filter=Q(kind=Statement.Kind.CORRECTIVE)),
            households=Count("household", distinct=True),
            net=Sum("net_eur"),
            tax=Sum("tax_eur"),
            total=Sum("total_eur"),
        )
        .order_by("-month")
    )
    return list(rows[:MONTHS_SHOWN])


@admin.register(StatementDelivery)
class StatementDeliveryAdmin(ReadOnlyAdmin):
    """Every mail of a statement: sent, retrying (with the error), or not sent (no address)."""

    list_display = ["statement", "reason", "to", "state_text", "attempts", "next_attempt_at", "sent_at", "created_at"]
    list_filter = ["reason", ("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["statement__code__exact", "to"]
    list_select_related = ["statement"]
    fields = [
        "statement",
        "reason",
        "requested_by",
        "to",
        "state_text",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
        "skip_reason",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="state")
    def state_text(self, delivery: StatementDelivery) -> str:
        return delivery.skip_reason or delivery.state


class SeriesCounterInline(ReadOnlyInline):
    model = SeriesCounter
    fields = ["year", "last_number"]
    readonly_fields = fields


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    """Numbering series, created by a migration; their counters are the last number used per year."""

    list_display = ["code", "purpose", "name", "active"]
    fields = ["code", "purpose", "name", "active", "created_at"]
    readonly_fields = fields
    inlines = [SeriesCounterInline]


class StatementActions(Operate):
    """The household admin's action: issue the last closed month's statement now (composed in energypay/admin.py)."""

    actions = ["issue_last_month"]

    @admin.action(description="Issue last month's statement (those still missing)", permissions=["operate"])
    def issue_last_month(self, request, queryset):
        households = list(queryset.order_by("pk").values_list("pk", "timezone")[:1001])
        if len(households) > 1000:
            self.message_user(request, "Select at most 1,000 households; nothing was done.", messages.ERROR)
            return
        now = timezone.now()
        by_month: defaultdict[date, list[int]] = defaultdict(list)
        for pk, tz in households:
            by_month[add_months(first_of_month(local_date(now, tz)), -1)].append(pk)
        tally: Counter = Counter()
        for month, ids in sorted(by_month.items()):
            tally.update(issue_households(ids, month, now=now, acting_user=request.user))
        log.warning(
            "statements_issued_by_staff by=%s households=%d tally=%s", request.user.pk, len(households), dict(tally)
        )
        parts = [
            f"{tally['issued']} issued",
            f"{tally['already_issued']} already issued",
            f"{tally['no_contract']} without a contract that month",
        ]
        self.message_user(request, "Statements: " + ", ".join(p for p in parts if not p.startswith("0 ")) + ".")


class AeatStateFilter(admin.SimpleListFilter):
    """What the AEAT said about the record; a record never sent has no transmission row and is pending."""

    title = "AEAT"
    parameter_name = "aeat"

    def lookups(self, request, model_admin):
        return RecordTransmission.State.choices

    def queryset(self, request, queryset):
        if self.value() == RecordTransmission.State.PENDING:
            return queryset.filter(
                Q(transmission__isnull=True) | Q(transmission__state=RecordTransmission.State.PENDING)
            )
        if self.value():
            return queryset.filter(transmission__state=self.value())
        return queryset


@admin.register(InvoiceRecord)
class InvoiceRecordAdmin(ReadOnlyAdmin):
    """VERI*FACTU records, read-only: written with their statements, never changed (docs/spain.md)."""

    list_display = [
        "position",
        "issuer_tax_id",
        "kind",
        "invoice_number",
        "invoice_type",
        "total",
        "generated_text",
        "aeat_state",
    ]
    list_filter = [AeatStateFilter, "kind", "invoice_type", "chain"]
    search_fields = ["invoice_number__exact", "hash__exact"]
    list_select_related = ["chain", "transmission"]
    show_full_result_count = False
    ordering = ["chain", "-position"]
    fields = [
        "chain",
        "position",
        "kind",
        "statement",
        "issuer_tax_id",
        "invoice_number",
        "invoice_date",
        "invoice_type",
        "total_tax",
        "total",
        "previous_issuer_tax_id",
        "previous_invoice_number",
        "previous_invoice_date",
        "previous_hash",
        "generated_text",
        "hash",
        "content",
        "created_by",
    ]
    readonly_fields = fields

    @admin.display(description="AEAT")
    def aeat_state(self, record: InvoiceRecord) -> str:
        transmission = getattr(record, "transmission", None)
        if transmission is None:
            return str(RecordTransmission.State.PENDING.label)
        text = transmission.get_state_display()
        return f"{text} ({transmission.error_code})" if transmission.error_code else text


@admin.register(InvoiceRecordChain)
class InvoiceRecordChainAdmin(ReadOnlyAdmin):
    """Each issuer's chain head; its page re-checks every hash and link of the chain."""

    list_display = ["issuer_tax_id", "length", "last_invoice_number", "updated_at"]
    fields = ["issuer_tax_id", "length", "last_invoice_number", "last_invoice_date", "last_hash", "chain_check"]
    readonly_fields = fields

    @admin.display(description="check")
    def chain_check(self, chain: InvoiceRecordChain) -> str:
        problems = records.verify(chain)
        if problems:
            return "; ".join(problems[:10])
        return "Whole: every hash matches its fields and links to the record before it."


@admin.register(RecordTransmission)
class RecordTransmissionAdmin(ReadOnlyAdmin):
    """Each record's answer from the AEAT. A rejected one stays here with its error: it is corrected by a new record
    (subsanación, not built yet: docs/spain.md), never sent again as it is."""

    list_display = ["record", "state", "duplicate", "error_code", "error_text", "attempts", "submission", "updated_at"]
    list_filter = ["state", "duplicate", "record__chain"]
    search_fields = ["record__invoice_number__exact", "error_code__exact"]
    list_select_related = ["record__chain", "submission__chain"]
    show_full_result_count = False
    ordering = ["-updated_at"]
    fields = ["record", "state", "duplicate", "error_code", "error_text", "attempts", "submission", "updated_at"]
    readonly_fields = fields


@admin.register(RecordSubmission)
class RecordSubmissionAdmin(ReadOnlyAdmin):
    """Every batch sent to the AEAT with its answer as received (the CSV is the AEAT's receipt)."""

    list_display = ["started_at", "chain", "record_count", "state", "status", "csv", "wait_seconds", "error"]
    list_filter = ["state", "status", "chain"]
    search_fields = ["csv__exact"]
    list_select_related = ["chain"]
    show_full_result_count = False
    fields = [
        "chain",
        "state",
        "record_count",
        "first_position",
        "last_position",
        "started_at",
        "finished_at",
        "status",
        "csv",
        "wait_seconds",
        "error",
        "request_xml",
        "response_xml",
    ]
    readonly_fields = fields


@admin.register(Distributor)
class DistributorAdmin(AuditHistory, admin.ModelAdmin):
    """Distribution companies by their CUPS code: the name and fault phone a household's bill prints (docs/spain.md)."""

    list_display = ["code", "name", "fault_phone", "updated_at"]
    search_fields = ["=code", "name"]
    fields = ["code", "name", "fault_phone"]


@admin.register(BillDisclosure)
class BillDisclosureAdmin(AuditHistory, admin.ModelAdmin):
    """The year's figures and texts every Spanish bill prints; a statement copies the one in force when issued,
    so a change here reaches only statements issued after it (docs/spain.md)."""

    list_display = ["year", "valid_from", "mix_renewable", "co2_g_per_kwh", "updated_at"]
    fieldsets = [
        (None, {"fields": ["year", "valid_from"]}),
        (
            "Origin of the electricity (% by source, adding up to 100)",
            {"fields": [name for name, _label in MIX_SOURCES]},
        ),
        ("Environmental impact", {"fields": ["co2_g_per_kwh", "radioactive_waste_mg_per_kwh", "source_note"]}),
        ("Texts", {"fields": ["switching_text", "claims_text", "odr_text", "bono_social_text"]}),
    ]
