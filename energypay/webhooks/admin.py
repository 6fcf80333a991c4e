"""Webhooks in the admin: endpoints (secret shown once, rotation, a test event, re-enabling), the delivery log, events.

A secret appears in exactly one response: the page right after it was made (an endpoint added, or
its secret rotated), sent with ``Cache-Control: no-store``; never in a message, a form, a list, a
log line or the audit trail. Afterwards staff see its hint (``whsec_...AbCd``).
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from energypay.webhooks import delivery, events, outbox
from energypay.webhooks.forms import EndpointForm
from energypay.webhooks.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from meters.adminkit import NoEditing, Operate, ReadOnlyAdmin, ReadOnlyInline, plural
from meters.audit import AuditHistory, record_action

MAX_PER_ACTION = 20  # endpoints per action (each test event, each secret shown)
MAX_REDELIVER = 500


def state_text(endpoint: WebhookEndpoint) -> str:
    if not endpoint.active:
        return "inactive"
    if endpoint.disabled_at:
        return f"disabled {endpoint.disabled_at:%Y-%m-%d %H:%M} UTC: {endpoint.disabled_reason}"
    if endpoint.failing_since:
        return f"failing since {endpoint.failing_since:%Y-%m-%d %H:%M} UTC"
    return "sending"


def secret_page(request, model_admin, title: str, shown: list[tuple[WebhookEndpoint, str]]) -> TemplateResponse:
    """The one page that shows secrets: never stored by any cache (private_no_store adds ``private`` too)."""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "shown": shown,
        "opts": model_admin.model._meta,
        "grace_hours": model_admin.grace_hours(),
    }
    response = TemplateResponse(request, "admin/webhooks/secret.html", context)
    response["Cache-Control"] = "no-store"
    return response


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditHistory, Operate, admin.ModelAdmin):
    form = EndpointForm
    list_display = ["__str__", "url", "subscribed", "active", "state", "secret_hint", "waiting"]
    list_filter = ["active"]
    search_fields = ["url", "description"]
    readonly_fields = [
        "secret_hint",
        "previous_secret_until",
        "state",
        "failing_since",
        "disabled_at",
        "disabled_reason",
        "deliveries_link",
        "created_at",
    ]
    actions = ["send_test_event", "rotate_secret", "reenable"]

    def grace_hours(self) -> int:
        return settings.WEBHOOK_ROTATION_GRACE_HOURS

    def get_queryset(self, request):
        # A correlated count over the pending deliveries' index, for the rows shown only (count_of's shape).
        waiting = WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), state=WebhookDelivery.State.PENDING)
        count = waiting.order_by().values("endpoint").annotate(n=Count("pk")).values("n")
        return super().get_queryset(request).annotate(n_waiting=Coalesce(Subquery(count), 0))

    def get_readonly_fields(self, request, obj=None):
        return ["secret_note"] if obj is None else self.readonly_fields

    @admin.display(description="secret")
    def secret_note(self, endpoint: WebhookEndpoint) -> str:
        return "made when you save, and shown once on the next page"

    @admin.display(description="events")
    def subscribed(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.event_labels()

    @admin.display(description="state")
    def state(self, endpoint: WebhookEndpoint) -> str:
        kind = "disabled" if endpoint.disabled_at else "failing" if endpoint.failing_since else "ok"
        return format_html('<span class="endpoint-state {}">{}</span>', kind, state_text(endpoint))

    @admin.display(description="waiting", ordering="n_waiting")
    def waiting(self, endpoint: WebhookEndpoint) -> int:
        return getattr(endpoint, "n_waiting", 0)

    @admin.display(description="delivery log")
    def deliveries_link(self, endpoint: WebhookEndpoint) -> str:
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<a href="{}">every delivery to this endpoint, with each attempt</a>', url)

    def changelist_view(self, request, extra_context=None):
        self._warn_disabled(request, WebhookEndpoint.objects.filter(active=True, disabled_at__isnull=False))
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET" and object_id.isdigit():
            self._warn_disabled(request, WebhookEndpoint.objects.filter(pk=object_id, disabled_at__isnull=False))
        return super().change_view(request, object_id, form_url, extra_context)

    def _warn_disabled(self, request, disabled) -> None:
        for endpoint in disabled[:10]:
            self.message_user(
                request,
                f"Webhook endpoint {endpoint} is disabled ({endpoint.disabled_reason}); its events wait. "
                'Fix the receiver, then use the action "Re-enable".',
                messages.ERROR,
            )

    def save_model(self, request, obj: WebhookEndpoint, form, change: bool) -> None:
        if not change:
            request._webhook_secret = obj.issue_secret()  # shown by response_add, kept nowhere else
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj: WebhookEndpoint, post_url_continue=None):
        secret = getattr(request, "_webhook_secret", None)
        if secret is None:
            return super().response_add(request, obj, post_url_continue)
        return secret_page(request, self, "Webhook endpoint added: its signing secret", [(obj, secret)])

    def selected(self, request, queryset) -> list[WebhookEndpoint] | None:
        rows = list(queryset.order_by("pk")[: MAX_PER_ACTION + 1])
        if len(rows) > MAX_PER_ACTION:
            self.message_user(request, f"Select at most {MAX_PER_ACTION} endpoints; nothing was done.", messages.ERROR)
            return None
        return rows

    @admin.action(description="Send a test event (webhook.test)", permissions=["operate"])
    def send_test_event(self, request, queryset):
        endpoints = self.selected(request, queryset)
        if endpoints is None:
            return
        now = timezone.now()
        for endpoint in endpoints:
            data = {"endpoint_id": endpoint.pk, "sent_by": "staff", "requested_at": now}
            sent = outbox.record_for(endpoint, events.TEST, data)
            record_action(endpoint, "webhook.test", "Sent a test event", actor=request.user, delivery_id=sent.pk)
        waiting = sum(1 for endpoint in endpoints if not endpoint.sending)
        note = f" {plural(waiting, 'endpoint')} not sending (inactive or disabled): theirs wait." if waiting else ""
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?event__type={events.TEST}"
        self.message_user(
            request,
            format_html(
                'Queued a test event for {}: see the <a href="{}">delivery log</a>.{}',
                plural(len(endpoints), "endpoint"),
                url,
                note,
            ),
            messages.SUCCESS,
        )

    @admin.action(description="Rotate the secret (the old one keeps signing for a while)", permissions=["operate"])
    def rotate_secret(self, request, queryset):
        endpoints = self.selected(request, queryset)
        if endpoints is None:
            return None
        now = timezone.now()
        shown = []
        for endpoint in endpoints:
            secret = endpoint.rotate_secret(now)
            record_action(endpoint, "webhook.rotate_secret", "Rotated the signing secret", actor=request.user)
            shown.append((endpoint, secret))
        return secret_page(request, self, "New signing secrets", shown)

    @admin.action(description="Re-enable (the receiver is fixed: send what waited)", permissions=["operate"])
    def reenable(self, request, queryset):
        endpoints = self.selected(request, queryset)
        if endpoints is None:
            return
        now = timezone.now()
        done = [endpoint for endpoint in endpoints if endpoint.reenable(now)]
        for endpoint in done:
            record_action(endpoint, "webhook.reenable", "Re-enabled after failures", actor=request.user)
        self.message_user(request, f"Re-enabled {plural(len(done), 'endpoint')}.", messages.SUCCESS)


class AttemptInline(ReadOnlyInline):
    model = DeliveryAttempt
    verbose_name_plural = "attempts (newest first)"
    fields = ["number", "at", "status_code", "duration_ms", "error", "response_excerpt", "next_attempt_at"]
    readonly_fields = fields


class EventTypeFilter(admin.SimpleListFilter):
    title = "event type"
    parameter_name = "event__type"

    def lookups(self, request, model_admin):
        return [(code, code) for code in [*events.EVENT_TYPES, events.TEST]]

    def queryset(self, request, queryset):
        return queryset.filter(event__type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(Operate, NoEditing, admin.ModelAdmin):
    """The delivery log: every event for every endpoint, its state and each attempt. Staff can redeliver."""

    list_display = [
        "event_type",
        "endpoint",
        "state",
        "attempts",
        "last_status",
        "last_error",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["state", EventTypeFilter, "endpoint"]
    list_select_related = ["event", "endpoint"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    search_fields = ["event__message_id__exact"]
    fields = [
        "event_link",
        "endpoint",
        "state",
        "attempts",
        "last_status",
        "last_error",
        "next_attempt_at",
        "retry_until",
        "delivered_at",
        "created_at",
    ]
    readonly_fields = fields
    inlines = [AttemptInline]
    actions = ["redeliver"]

    @admin.display(description="event", ordering="event__type")
    def event_type(self, row: WebhookDelivery) -> str:
        return row.event.type

    @admin.display(description="event")
    def event_link(self, row: WebhookDelivery) -> str:
        url = reverse("admin:webhooks_webhookevent_change", args=[row.event_id])
        return format_html('<a href="{}">{} {}</a>', url, row.event.type, row.event.message_id)

    @admin.action(description="Redeliver now (the same event, the same webhook-id)", permissions=["operate"])
    def redeliver(self, request, queryset):
        rows = list(queryset.order_by("pk").values_list("pk", flat=True)[: MAX_REDELIVER + 1])
        if len(rows) > MAX_REDELIVER:
            self.message_user(request, f"Select at most {MAX_REDELIVER} deliveries; none was queued.", messages.ERROR)
            return
        queued = delivery.redeliver(rows, timezone.now())
        for row in WebhookDelivery.objects.filter(pk__in=rows).select_related("event", "endpoint"):
            record_action(row, "webhook.redeliver", "Queued for redelivery", actor=request.user)
        outbox.nudge()
        what = "delivery" if queued == 1 else "deliveries"
        self.message_user(request, f"Queued {queued} {what} to be sent again now.", messages.SUCCESS)


class DeliveryInline(ReadOnlyInline):
    model = WebhookDelivery
    fields = ["endpoint", "state", "attempts", "last_status", "last_error", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    show_change_link = True


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """What happened, exactly as sent: the body every subscribed endpoint received."""

    list_display = ["type", "message_id", "household_id", "created_at"]
    list_filter = ["type"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    search_fields = ["message_id__exact"]
    fields = ["type", "message_id", "household_id", "created_at", "pretty_body"]
    readonly_fields = fields
    inlines = [DeliveryInline]

    @admin.display(description="body")
    def pretty_body(self, event: WebhookEvent) -> str:
        return format_html('<pre class="raw-hex">{}</pre>', json.dumps(json.loads(event.body), indent=2))
