"""Alarm rules a household sets, and the events they raise (an outbox, like healthchecks' Flip).

A rule's state (firing or not) changes only through ``AlarmRule.record``: a conditional UPDATE
(``firing=False -> True`` or back) and the event row, in one transaction. Whoever wins the UPDATE
writes the one event; a second evaluation of the same data, or a second worker at the same moment,
updates nothing and writes nothing. Events are mailed later by alarms/notify.py and kept as history.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.db.models import Q

from alarms.rules import Kind, describe, format_amount, render_facts
from meters.hooks import emit
from meters.models import Household

log = logging.getLogger(__name__)


class AlarmRuleQuerySet(models.QuerySet):
    def pause(self) -> int:
        """Stop watching these rules: one UPDATE; returns how many were active (see ``AlarmRule.pause``)."""
        return self.filter(paused=False).update(
            paused=True, firing=False, since=None, last_value=None, last_evaluated_at=None
        )

    def resume(self) -> int:
        return self.filter(paused=True).update(paused=False)


class AlarmRule(models.Model):
    Kind = Kind

    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="alarm_rules")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    threshold = models.DecimalField(
        max_digits=12, decimal_places=3, null=True, blank=True, help_text="EUR, kWh, days or hours, by kind."
    )
    paused = models.BooleanField(default=False, help_text="A paused rule is not evaluated and is not firing.")
    muted_until = models.DateTimeField(
        null=True, blank=True, help_text="Until then, events are recorded and shown but not mailed."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The current state, written only by record() and pause()/edit() below.
    firing = models.BooleanField(default=False, editable=False)
    since = models.DateTimeField(null=True, blank=True, editable=False, help_text="When the current state began.")
    last_value = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True, editable=False)
    last_evaluated_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AlarmRuleQuerySet.as_manager()

    class Meta:
        ordering = ["household", "created_at", "pk"]
        indexes = [
            # The periodic job: households with an active rule of a time-based kind, or a firing rule.
            models.Index(fields=["kind", "household"], condition=Q(paused=False), name="alarm_rule_active"),
            models.Index(fields=["household"], condition=Q(firing=True), name="alarm_rule_firing"),
        ]

    def __str__(self) -> str:
        return self.description

    @property
    def description(self) -> str:
        return describe(self.kind, self.threshold)

    @property
    def threshold_text(self) -> str:
        return format_amount(self.kind, self.threshold)

    @property
    def value_text(self) -> str:
        return format_amount(self.kind, self.last_value)

    @property
    def reading(self) -> str:
        """The last measured value as the list shows it: "now EUR 6.25", "EUR 0.40 unpaid", or nothing."""
        if self.last_evaluated_at is None or self.last_value is None:
            return ""
        if self.kind == Kind.SETTLEMENT_FAILED:
            return f"{self.value_text} unpaid" if self.last_value else ""
        return f"now {self.value_text}"

    def is_muted(self, now: datetime) -> bool:
        return self.muted_until is not None and self.muted_until > now

    def record(
        self, holds: bool, value: Decimal | None, now: datetime, facts: Sequence[dict[str, Any]] = ()
    ) -> AlarmEvent | None:
        """Store one evaluation's outcome; returns the event when the rule fired or cleared.

        The event stores codes and numbers (the rule's kind and threshold, the value, ``facts`` such as
        ``rules.refused_fact(2)``), never a sentence: its text is rendered where it is shown.

        Webhooks hear of it (alarm.triggered, alarm.cleared) through meters.hooks.emit, in the same transaction.

        The flip is ``UPDATE ... WHERE firing = <old> AND paused = false``: on PostgreSQL a second
        writer waits for the first's row lock, re-reads the row, no longer matches and updates
        nothing, so it writes no event. The event is created in the same transaction, so a crash
        leaves either both or neither.
        """
        fields = {"last_value": value, "last_evaluated_at": now}
        with transaction.atomic():
            flipped = AlarmRule.objects.filter(pk=self.pk, firing=not holds, paused=False).update(
                firing=holds, since=now, **fields
            )
            if not flipped:
                AlarmRule.objects.filter(pk=self.pk, paused=False).update(**fields)
                self.last_value, self.last_evaluated_at = value, now
                return None
            self.firing, self.since, self.last_value, self.last_evaluated_at = holds, now, value, now
            muted = self.is_muted(now)
            event = AlarmEvent.objects.create(
                household_id=self.household_id,
                rule=self,
                rule_kind=self.kind,
                kind=AlarmEvent.Kind.FIRED if holds else AlarmEvent.Kind.CLEARED,
                value=value,
                threshold=self.threshold,
                facts=list(facts),
                at=now,
                # A muted rule's events are history, not mail: never due, and the reason is kept.
                next_attempt_at=None if muted else now,
                skip_reason=f"muted until {self.muted_until:%Y-%m-%d %H:%M} UTC" if muted else "",
            )
            emit("alarm.triggered" if holds else "alarm.cleared", self.household_id, event.webhook_data())
        log.info("alarm_%s rule=%s household=%s value=%s", event.kind, self.pk, self.household_id, value)
        return event

    def pause(self) -> bool:
        """Stop watching. The state resets without an event: resuming starts fresh, so a condition
        that still holds fires (and is mailed) again rather than being silently assumed known."""
        return bool(AlarmRule.objects.filter(pk=self.pk).pause())

    def resume(self) -> bool:
        return bool(AlarmRule.objects.filter(pk=self.pk).resume())

    def mute(self, until: datetime | None) -> None:
        AlarmRule.objects.filter(pk=self.pk).update(muted_until=until)
        self.muted_until = until

    def edit(self, kind: str, threshold: Decimal | None) -> None:
        """Change what the rule watches, under its row lock so a concurrent flip is not overwritten.

        A new kind is a new question: the state resets without an event. A new threshold keeps the
        state, and the next evaluation clears or fires it against the new number, with an event.
        """
        with transaction.atomic():
            locked = AlarmRule.objects.select_for_update().get(pk=self.pk)
            fields = {"kind": kind, "threshold": threshold}
            if kind != locked.kind:
                fields |= {"firing": False, "since": None, "last_value": None, "last_evaluated_at": None}
            AlarmRule.objects.filter(pk=self.pk).update(**fields)
        self.refresh_from_db()


class AlarmEventQuerySet(models.QuerySet):
    def due(self, now: datetime) -> AlarmEventQuerySet:
        """Events waiting to be mailed whose next attempt is now or past (the partial index serves this)."""
        return self.filter(notified_at__isnull=True, next_attempt_at__isnull=False, next_attempt_at__lte=now)

    def failing(self) -> AlarmEventQuerySet:
        return self.filter(notified_at__isnull=True, attempts__gt=0)


class AlarmEvent(models.Model):
    """A rule fired or cleared. Kept as history after it is mailed; the rule may be deleted since."""

    class Kind(models.TextChoices):
        FIRED = "fired", "Fired"
        CLEARED = "cleared", "Cleared"

    household = models.ForeignKey(Household, on_delete=models.CASCADE, related_name="alarm_events")
    rule = models.ForeignKey(AlarmRule, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    # What the rule said when it flipped: the history stays true after the rule is edited or deleted.
    # Codes and numbers only; the sentences are rendered where the event is shown (``description``,
    # ``detail``), in the reader's language.
    rule_kind = models.CharField(max_length=20, choices=AlarmRule.Kind.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = models.DecimalField(max_digits=18, decimal_places=6, null=True, blank=True)
    threshold = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    facts = models.JSONField(
        default=list, blank=True, help_text='What else it found, by code: [{"code": "settlement.failed", "count": 1}].'
    )
    # Events stored before facts existed kept their detail as an English sentence: shown as it was.
    legacy_detail = models.CharField(max_length=500, blank=True, editable=False)
    at = models.DateTimeField()
    # The outbox: due while notified_at is null and next_attempt_at is set and past.
    notified_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    skip_reason = models.CharField(max_length=100, blank=True, help_text="Why it was not mailed (muted).")
    read_at = models.DateTimeField(null=True, blank=True)

    objects = AlarmEventQuerySet.as_manager()

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["household", "-at", "-id"], name="alarm_event_history"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(notified_at__isnull=True, next_attempt_at__isnull=False),
                name="alarm_event_due",
            ),
            models.Index(fields=["household"], condition=Q(read_at__isnull=True), name="alarm_event_unread"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.description} ({self.value_text})"

    @property
    def code(self) -> str:
        """A stable name for what happened, for machines (webhooks, filters): "alarm.daily_cost.fired"."""
        return f"alarm.{self.rule_kind}.{self.kind}"

    @property
    def description(self) -> str:
        """The rule as it read when it flipped, rendered now: "Tell me when a day costs EUR 5.00 or more"."""
        return describe(self.rule_kind, self.threshold)

    @property
    def detail(self) -> str:
        """What else the evaluation found, rendered now: "1 payment refused by the network in the last 24 hours"."""
        return render_facts(self.facts) if self.facts else self.legacy_detail

    @property
    def value_text(self) -> str:
        return format_amount(self.rule_kind, self.value)

    @property
    def threshold_text(self) -> str:
        return format_amount(self.rule_kind, self.threshold)

    def webhook_data(self) -> dict:
        """The event as webhooks tell it (docs/webhooks.md): codes and numbers, never a sentence."""
        return {
            "alarm_event_id": self.pk,
            "household_id": self.household_id,
            "rule_id": self.rule_id,
            "code": self.code,
            "rule_kind": self.rule_kind,
            # In the places the columns keep, whether this instance was just created or loaded.
            "threshold": None if self.threshold is None else f"{Decimal(self.threshold):.3f}",
            "value": None if self.value is None else f"{Decimal(self.value):.6f}",
            "facts": self.facts,
            "at": self.at,
        }

    @property
    def notification_state(self) -> str:
        if self.notified_at:
            return "sent"
        if self.skip_reason:
            return "not sent"
        return "retrying" if self.attempts else "pending"
