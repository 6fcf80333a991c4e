"""Webhook endpoints in the audit trail (meters/audit.py): every staff change, never a secret.

The secrets are left out of every entry; a rotation shows as the new hint and the old secret's
grace period. Fields the delivery job writes (a failing streak, an automatic disable) are left out
too: they are not staff changes, and the delivery log tells them.
"""

from __future__ import annotations

from auditlog.registry import auditlog

from energypay.webhooks.models import WebhookEndpoint

auditlog.register(
    WebhookEndpoint,
    exclude_fields=["secret", "previous_secret", "failing_since", "disabled_at", "disabled_reason"],
)
