"""The audit trail (django-auditlog): who changed what in households, meters, tariffs and tax rules, and when.

Each app registers its own models, in its AppConfig.ready(); the admin's middleware
(energypay.middleware.StaffAuditMiddleware) names the staff member behind each change. Fields that
machines write (a meter's last reading, its request budget, a household's ledger version) are left
out: they are not staff changes, and a meter's token hash is a credential. Staff actions that move
money or decide about readings save no audited field, so they write an explicit entry
(``record_action``) naming the action and what it did.
"""

from __future__ import annotations

from typing import Any

from auditlog.mixins import AuditlogHistoryAdminMixin
from auditlog.models import LogEntry
from auditlog.registry import auditlog
from django.contrib.admin.utils import unquote
from django.db.models import Model
from django.http import HttpRequest
from django.urls import reverse

from meters.models import ContractedPower, Household, Meter, Tariff, TariffAssignment, TariffVersion, TaxRule

ACTION_FIELD = "staff action"


def register() -> None:
    auditlog.register(Household, exclude_fields=["usage_version"])
    auditlog.register(
        Meter,
        exclude_fields=[
            "token_hash",
            "last_reading_at",
            "last_register_kwh",
            "previous_reading_at",
            "previous_register_kwh",
            "last_seen_at",
            "rate_window",
            "rate_count",
        ],
    )
    auditlog.register(Tariff, exclude_fields=["revision"])
    auditlog.register(TariffVersion)
    auditlog.register(TariffAssignment)
    auditlog.register(ContractedPower)
    auditlog.register(TaxRule)


def record_action(instance: Model, action: str, summary: str, *, actor: Any, **details: Any) -> LogEntry:
    """An explicit audit entry on ``instance``: ``action`` a stable code ("settlement.retry"), ``summary`` for people.

    ``details`` (ids, counts, outcomes; never a secret) go into the entry's additional data. In the
    caller's transaction, when it has one: an action that rolls back leaves no entry.
    """
    return LogEntry.objects.log_create(
        instance,
        force_log=True,
        action=LogEntry.Action.UPDATE,
        changes={ACTION_FIELD: ["", summary]},
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_email=getattr(actor, "email", None),
        additional_data={"action": action, **details},
    )


class AuditHistory(AuditlogHistoryAdminMixin):
    """An admin mixin: the object's audit trail at ``<id>/auditlog/``, linked from its change page ("Audit log").

    Django's own "History" stays beside it (the admin's change messages); the audit trail has every
    change with its old and new values and who made it, wherever it was made, and the explicit entries.
    """

    auditlog_history_per_page = 25

    def auditlog_history_view(self, request: HttpRequest, object_id: str, extra_context=None):
        # django-auditlog renders a page about nothing (and fails on its links) for an id that is no object;
        # Django's own history sends such a request back to the list with a message.
        if self.get_object(request, unquote(object_id)) is None:
            return self._get_obj_does_not_exist_redirect(request, self.model._meta, object_id)
        return super().auditlog_history_view(request, object_id, extra_context)

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None):
        opts = self.model._meta
        audit_url = reverse(f"admin:{opts.app_label}_{opts.model_name}_auditlog", args=[object_id])
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "audit_url": audit_url})
