"""Notifications to households, and what each household wants to be told where.

A ``Notification`` is a code and its numbers (``params``), written in the transaction of the event
it tells (``inbox.record``). ``key`` names that event (the deposit's txid, the arrears episode, the
settlement): unique per household, so the same event delivered twice writes one row. Whether it
counts in the page's badge and whether it is mailed are fixed when it is written, from the
household's ``NotificationPreference`` for its kind (or ``kinds.DEFAULTS``), so a later change of
mind neither mails old news nor hides what was already shown.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from energypay.notifications import kinds
from meters.models import Household


class NotificationQuerySet(models.QuerySet):
    def unread_badge(self, household: Household) -> NotificationQuerySet:
        """What the nav's badge counts: unread notifications of kinds the household wants in the page."""
        return self.filter(household=household, badge=True, read_at__isnull=True)

    def mail_due(self, now: datetime) -> NotificationQuerySet:
        """Mails waiting to be sent whose next attempt is now or past (the partial index serves this)."""
        return self.filter(next_attempt_at__lte=now, mailed_at__isnull=True)


class Notification(models.Model):
    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=40, choices=kinds.CHOICES)
    params = models.JSONField(default=dict, blank=True)
    key = models.CharField(max_length=200, help_text="The event this tells: unique per household.")
    badge = models.BooleanField(default=True, help_text="Counted in the page's badge until read.")
    created_at = models.DateTimeField()
    read_at = models.DateTimeField(null=True, blank=True)
    # Mail: wanted when next_attempt_at is set; sent when mailed_at is. Retried with backoff, never dropped.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    mailed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["household", "key"], name="notification_once_per_event")]
        indexes = [
            models.Index(fields=["household", "-created_at"], name="notification_household_new"),
            models.Index(
                fields=["household"],
                name="notification_unread_badge",
                condition=Q(badge=True, read_at__isnull=True),
            ),
            models.Index(
                fields=["next_attempt_at"],
                name="notification_mail_due",
                condition=Q(next_attempt_at__isnull=False, mailed_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.household_id}: {self.kind} ({self.key})"

    @property
    def title(self) -> str:
        return kinds.title(self.kind)

    @property
    def sentence(self) -> str:
        return kinds.describe(self.kind, self.params)


class NotificationPreference(models.Model):
    """Where a household wants one kind of notification: the page's badge, mail, both or neither."""

    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="notification_preferences")
    kind = models.CharField(max_length=40, choices=kinds.CHOICES)
    badge = models.BooleanField()
    email = models.BooleanField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["household", "kind"], name="notification_preference_once")]

    def __str__(self) -> str:
        return f"{self.household_id}: {self.kind} badge={self.badge} email={self.email}"


def preferences(household_ids: list[int]) -> dict[tuple[int, str], dict[str, bool]]:
    """(household id, kind) -> {"badge", "email"} for every kind, the defaults where nothing was chosen. One query."""
    rows = NotificationPreference.objects.filter(household_id__in=household_ids)
    chosen = {
        (hid, kind): {"badge": badge, "email": email}
        for hid, kind, badge, email in rows.values_list("household_id", "kind", "badge", "email")
    }
    return {(hid, kind): chosen.get((hid, kind), kinds.DEFAULTS[kind]) for hid in household_ids for kind in kinds.CODES}


class PaymentTrouble(models.Model):
    """A household whose payment the network refused, until a later payment of its confirms (then it is told)."""

    household = models.OneToOneField(Household, on_delete=models.CASCADE, related_name="payment_trouble")
    settlement_id = models.BigIntegerField(help_text="The refused settlement: only a later one clears the trouble.")
    failed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.household_id}: settlement {self.settlement_id} refused"
