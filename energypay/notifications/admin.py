from __future__ import annotations

from django.contrib import admin

from energypay.notifications.models import Notification


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """Read-only: what households were told, and whether their mail went out (staff fix addresses, not history)."""

    list_display = ["created_at", "household", "kind", "badge", "read_at", "mailed_at", "attempts", "next_attempt_at"]
    list_filter = ["kind", "badge"]
    search_fields = ["household__name", "household__user__email", "key"]
    readonly_fields = [field.name for field in Notification._meta.fields]
    list_select_related = ["household"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
