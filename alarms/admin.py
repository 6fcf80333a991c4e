"""Staff see every alarm rule and event; which notifications failed, and why.

Rules are read-only here apart from pause/resume: a rule's state is written only by evaluation,
and a full-row save from a form could overwrite a flip that happened while the page was open.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from alarms.models import AlarmEvent, AlarmRule
from meters.adminkit import NoEditing, Operate


@admin.register(AlarmRule)
class AlarmRuleAdmin(Operate, NoEditing, admin.ModelAdmin):
    list_display = (
        "description",
        "household",
        "kind",
        "threshold",
        "firing",
        "since",
        "last_value",
        "paused",
        "muted_until",
    )
    list_filter = ("kind", "firing", "paused")
    list_select_related = ("household",)
    search_fields = ("household__name", "household__user__email")
    readonly_fields = (
        "household",
        "kind",
        "threshold",
        "paused",
        "muted_until",
        "created_at",
        "firing",
        "since",
        "last_value",
        "last_evaluated_at",
    )
    actions = ("pause", "resume")
    ordering = ("-pk",)

    @admin.display(description="Rule")
    def description(self, rule: AlarmRule) -> str:
        return rule.description

    @admin.action(description="Pause the selected rules", permissions=["operate"])
    def pause(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = queryset.pause()  # one UPDATE, not one per rule
        self.message_user(request, f"Paused {done} rule(s).", messages.SUCCESS)

    @admin.action(description="Resume the selected rules", permissions=["operate"])
    def resume(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = queryset.resume()
        self.message_user(request, f"Resumed {done} rule(s); the next evaluation looks at them.", messages.SUCCESS)


class NotificationFilter(admin.SimpleListFilter):
    title = "notification"
    parameter_name = "notification"

    def lookups(self, request, model_admin):
        return [
            ("sent", "Sent"),
            ("pending", "Waiting for the first attempt"),
            ("failed", "Notification failed (retrying)"),
            ("muted", "Not sent (muted)"),
        ]

    def queryset(self, request, queryset: QuerySet) -> QuerySet:
        match self.value():
            case "sent":
                return queryset.filter(notified_at__isnull=False)
            case "pending":
                return queryset.filter(notified_at__isnull=True, attempts=0, next_attempt_at__isnull=False)
            case "failed":
                return queryset.failing()
            case "muted":
                return queryset.filter(notified_at__isnull=True, next_attempt_at__isnull=True)
        return queryset


@admin.register(AlarmEvent)
class AlarmEventAdmin(Operate, NoEditing, admin.ModelAdmin):
    list_display = (
        "at",
        "household",
        "kind",
        "description",
        "detail",
        "code",
        "value",
        "threshold",
        "notification_state",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("kind", NotificationFilter, "rule_kind")
    list_select_related = ("household",)
    search_fields = ("household__name", "household__user__email", "last_error")
    date_hierarchy = "at"
    actions = ("retry_now",)

    # The sentences are rendered from the stored codes and numbers, in the reader's language (alarms/rules.py).
    @admin.display(description="Alarm")
    def description(self, event: AlarmEvent) -> str:
        return event.description

    @admin.display(description="Found")
    def detail(self, event: AlarmEvent) -> str:
        return event.detail or "-"

    @admin.display(description="Code")
    def code(self, event: AlarmEvent) -> str:
        return event.code

    @admin.display(description="Email")
    def notification_state(self, event: AlarmEvent) -> str:
        return event.skip_reason or event.notification_state

    @admin.action(description="Retry sending the selected failed notifications now", permissions=["operate"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.failing().update(next_attempt_at=timezone.now())
        self.message_user(request, f"{count} notification(s) will be retried within a minute.", messages.SUCCESS)
