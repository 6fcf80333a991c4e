"""Webhook endpoints, the events written for them (an outbox, like healthchecks' Flip), deliveries and their log.

- ``WebhookEndpoint``: where staff want events sent, which types, and the secret that signs them.
- ``WebhookEvent``: what happened, with the exact body every endpoint receives; written in the
  transaction of the change (outbox.record), only when some endpoint subscribes to its type.
- ``WebhookDelivery``: one event for one endpoint: the outbox row Celery sends, retried with
  backoff until delivered or given up (``WEBHOOK_RETRY_HOURS``).
- ``DeliveryAttempt``: the log, one row per try: status, time taken, the answer's start, next try.
- ``ArrearsState``, ``MeterSilence``: what the periodic detectors last saw, so each transition
  fires once.

Lock order: a delivery row alone (claimed with SKIP LOCKED, never while another lock is held);
the detectors hold their job's heartbeat row while they compare and write their state.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models, transaction
from django.db.models import Q

from energypay.webhooks import signing
from energypay.webhooks.events import EVENT_TYPES
from meters.models import Household, Meter

RESPONSE_EXCERPT_CHARS = 1000
ERROR_CHARS = 500


def new_message_id() -> str:
    """The ``webhook-id`` of an event: the same on every retry and for every endpoint, so receivers drop repeats."""
    return f"msg_{uuid.uuid4().hex}"


class WebhookEndpoint(models.Model):
    """A receiver staff registered. Its secret is shown once (then only ``secret_hint``) and never logged.

    ``active`` is the staff's switch: an inactive endpoint gets no new events and nothing is sent to it.
    ``disabled_at`` is set by the delivery job after WEBHOOK_DISABLE_AFTER_DAYS of nothing but
    failures: events still queue for it, nothing is sent until staff re-enable it (the admin and the
    status page say so).
    """

    url = models.URLField("URL", max_length=2000, help_text="Where events are POSTed (https://...).")
    description = models.CharField(max_length=200, blank=True, help_text="Who receives them, for staff.")
    events = models.JSONField(default=list, help_text="The event types it subscribes to.")
    active = models.BooleanField(default=True, help_text="Inactive: no events are queued or sent.")
    # The signing secrets: "whsec_" + base64 of 32 random bytes. Never in a form, a page, a log or the audit trail.
    secret = models.CharField(max_length=100, editable=False)
    secret_hint = models.CharField("secret", max_length=20, editable=False, help_text="The secret's last characters.")
    previous_secret = models.CharField(max_length=100, blank=True, editable=False)
    previous_secret_until = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="After a rotation, the old secret also signs until then."
    )
    failing_since = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Every attempt since then failed."
    )
    disabled_at = models.DateTimeField(null=True, blank=True, editable=False)
    disabled_reason = models.CharField(max_length=200, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.description or self.url

    @property
    def sending(self) -> bool:
        return self.active and self.disabled_at is None

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign a message sent at ``now``: the current one, and the previous one during its grace."""
        secrets = [self.secret]
        if self.previous_secret and self.previous_secret_until and self.previous_secret_until > now:
            secrets.append(self.previous_secret)
        return secrets

    def subscribes_to(self, event_type: str) -> bool:
        return event_type in self.events

    def issue_secret(self) -> str:
        """Give a new endpoint its secret (before its first save) and return it, to be shown once."""
        secret = signing.new_secret()
        self.secret, self.secret_hint = secret, signing.hint(secret)
        return secret

    def rotate_secret(self, now: datetime) -> str:
        """A new secret, returned to be shown once; the old one also signs for WEBHOOK_ROTATION_GRACE_HOURS.

        Under the row's lock, so two rotations at once leave a consistent pair (each shows its own secret;
        the later one's is current, the earlier one's signs as the previous one).
        """
        secret = signing.new_secret()
        with transaction.atomic():
            locked = WebhookEndpoint.objects.select_for_update().get(pk=self.pk)
            locked.previous_secret = locked.secret
            locked.previous_secret_until = now + timedelta(hours=settings.WEBHOOK_ROTATION_GRACE_HOURS)
            locked.secret, locked.secret_hint = secret, signing.hint(secret)
            locked.save(update_fields=["secret", "secret_hint", "previous_secret", "previous_secret_until"])
        self.refresh_from_db()
        return secret

    def reenable(self, now: datetime) -> bool:
        """Staff say the receiver is fixed: sending resumes, and what waited gets a fresh retry window."""
        with transaction.atomic():
            locked = WebhookEndpoint.objects.select_for_update().get(pk=self.pk)
            if locked.disabled_at is None and locked.failing_since is None:
                return False
            locked.disabled_at, locked.disabled_reason, locked.failing_since = None, "", None
            locked.save(update_fields=["disabled_at", "disabled_reason", "failing_since"])
            WebhookDelivery.objects.filter(endpoint=locked, state=WebhookDelivery.State.PENDING).update(
                next_attempt_at=now, retry_until=now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)
            )
        self.refresh_from_db()
        return True

    def event_labels(self) -> str:
        return ", ".join(code for code in self.events if code in EVENT_TYPES) or "-"


class WebhookEvent(models.Model):
    """Something that happened, as every endpoint receives it: ``body`` is the exact JSON sent, never rebuilt."""

    message_id = models.CharField(max_length=40, unique=True, default=new_message_id, editable=False)
    type = models.CharField(max_length=60)
    # A plain id, not a foreign key: the event is history, and its insert takes no lock on the household row.
    household_id = models.BigIntegerField(null=True, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["created_at"], name="webhook_event_created"),
            models.Index(fields=["household_id", "-created_at"], name="webhook_event_household"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.message_id}"

    @staticmethod
    def render(event_type: str, data: dict, at: datetime) -> str:
        """The body: ``{"type", "timestamp", "data"}`` (the Standard Webhooks shape); decimals as strings, UTC."""
        body = {"type": event_type, "timestamp": at, "data": data}
        return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True)


class DeliveryQuerySet(models.QuerySet):
    def due(self, now: datetime) -> DeliveryQuerySet:
        """Pending deliveries whose next attempt is now or past (the partial index serves this)."""
        return self.filter(state=WebhookDelivery.State.PENDING, next_attempt_at__lte=now)


class WebhookDelivery(models.Model):
    """One event for one endpoint: the outbox row. Pending until delivered (a 2xx answer) or given up."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Given up"

    event = models.ForeignKey(WebhookEvent, on_delete=models.CASCADE, related_name="deliveries")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # While an attempt is under way, its lease: a worker that died mid-attempt leaves it due again after it.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    retry_until = models.DateTimeField(help_text="Retried until then, then given up.")
    last_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="HTTP status of the last answer.")
    last_error = models.CharField(max_length=ERROR_CHARS, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "endpoint"], name="webhook_delivery_once"),
        ]
        indexes = [
            models.Index(fields=["next_attempt_at"], condition=Q(state="pending"), name="webhook_delivery_due"),
            # The status page: each endpoint's deliveries waiting, and the oldest of them.
            models.Index(
                fields=["endpoint", "created_at"], condition=Q(state="pending"), name="webhook_delivery_waiting"
            ),
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_endpoint"),
            models.Index(fields=["-created_at"], name="webhook_delivery_created"),  # the delivery log, newest first
        ]

    def __str__(self) -> str:
        return f"{self.event.type} to {self.endpoint} ({self.state})"


class DeliveryAttempt(models.Model):
    """One try of a delivery: what the receiver answered (or why there was no answer), and what comes next."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="log")
    number = models.PositiveIntegerField()
    at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(
        blank=True, help_text=f"The answer's first {RESPONSE_EXCERPT_CHARS} characters."
    )
    error = models.CharField(max_length=ERROR_CHARS, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "-number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_once")]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class ArrearsState(models.Model):
    """A household the arrears detector last saw in arrears: its row exists from arrears_started to arrears_cleared."""

    household = models.OneToOneField(Household, on_delete=models.CASCADE, related_name="+")
    unpaid_since = models.DateTimeField(help_text="The oldest unpaid hour when arrears started.")
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"household {self.household_id} in arrears since {self.started_at:%Y-%m-%d %H:%M} UTC"


class MeterSilence(models.Model):
    """The last silence of a meter that meter.silent announced: ``since`` is when it was last heard from.

    A new silence (the meter spoke, then fell silent again) has another ``since``, and fires again.
    """

    meter = models.OneToOneField(Meter, on_delete=models.CASCADE, related_name="+")
    since = models.DateTimeField()
    notified_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"meter {self.meter_id} silent since {self.since:%Y-%m-%d %H:%M} UTC"
