"""Sending the outbox: each due delivery claimed by one worker, sent once per attempt, logged, retried with backoff.

Delivery is at-least-once; receivers drop repeats by ``webhook-id``. A delivery is claimed in a
short transaction (``SELECT ... FOR UPDATE SKIP LOCKED``, then a conditional UPDATE that counts the
attempt and moves ``next_attempt_at`` a lease ahead), and sent after that transaction committed: no
lock is held while a receiver takes its time, two workers never send the same attempt, and a worker
that dies mid-attempt leaves the delivery due again when the lease runs out. The outcome is
recorded in a second transaction with the attempt's log row.

Failures (no answer, a refusal of the address, a non-2xx status, a redirect) are retried after 1, 2,
4 ... minutes, at most LONGEST_WAIT apart, until ``retry_until`` (WEBHOOK_RETRY_HOURS after the
event): then the delivery is given up, and stays in the log for a staff member's "redeliver". An
endpoint whose attempts have all failed for WEBHOOK_DISABLE_AFTER_DAYS is disabled: its deliveries
wait, and the admin and the status page say so, until staff re-enable it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from energypay.webhooks import signing, transport
from energypay.webhooks.models import RESPONSE_EXCERPT_CHARS, DeliveryAttempt, WebhookDelivery, WebhookEndpoint
from lib.backoff import schedule

log = logging.getLogger(__name__)

BATCH = 100  # attempts per run; beat runs every few seconds and the rest wait for the next run
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=4)
DELIVERED, RETRYING, GAVE_UP = "delivered", "retrying", "gave_up"


def backoff(attempts: int) -> timedelta:
    """Wait after attempt ``attempts`` failed: 1, 2, 4, 8 ... minutes, at most 4 hours (about 20 tries in 48 h)."""
    return schedule(attempts - 1, first=FIRST_RETRY, cap=LONGEST_WAIT)


def lease() -> timedelta:
    """Longer than any attempt can take (resolving, then connecting and reading under one deadline), with slack."""
    return timedelta(seconds=2 * settings.WEBHOOK_CONNECT_TIMEOUT + settings.WEBHOOK_READ_TIMEOUT + 60)


@dataclass(frozen=True)
class Claim:
    delivery: WebhookDelivery  # with its event and endpoint
    number: int  # this attempt's number, counted by the claim


def deliver_due(limit: int = BATCH) -> Counter:
    """Send up to ``limit`` due deliveries, oldest first; returns how many were delivered, will retry, gave up.

    An endpoint that failed once in this run is skipped for the rest of it: a receiver that hangs
    costs one timeout per run, not one per event waiting for it.
    """
    tally: Counter = Counter()
    failing: set[int] = set()
    for _ in range(limit):
        claim = claim_next(timezone.now(), failing)
        if claim is None:
            break
        outcome = attempt(claim)
        tally[outcome] += 1
        if outcome != DELIVERED:
            failing.add(claim.delivery.endpoint_id)
    return tally


def claim_next(now: datetime, skip: set[int] | frozenset[int] = frozenset()) -> Claim | None:
    """Claim the oldest due delivery of a sending endpoint (not in ``skip``): count the attempt, take a lease."""
    with transaction.atomic():
        delivery = (
            WebhookDelivery.objects.due(now)
            .filter(endpoint__active=True, endpoint__disabled_at__isnull=True)
            .exclude(endpoint_id__in=skip)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("event", "endpoint")
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if delivery is None:
            return None
        number = delivery.attempts + 1
        # Conditional on what was read: belt and braces where the database has no row locks (SQLite
        # serializes writers instead).
        claimed = WebhookDelivery.objects.filter(
            pk=delivery.pk, state=WebhookDelivery.State.PENDING, attempts=delivery.attempts
        ).update(attempts=number, next_attempt_at=now + lease())
    return Claim(delivery, number) if claimed else None


def attempt(claim: Claim) -> str:
    """Sign and send one claimed delivery (no transaction open), then record what happened."""
    delivery = claim.delivery
    endpoint, event = delivery.endpoint, delivery.event
    sent_at = timezone.now()
    body = event.body.encode()
    answer = transport.post(
        endpoint.url,
        body,
        signing.headers(endpoint.signing_secrets(sent_at), event.message_id, body, sent_at),
        connect_timeout=settings.WEBHOOK_CONNECT_TIMEOUT,
        read_timeout=settings.WEBHOOK_READ_TIMEOUT,
        allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
        allow_http=settings.WEBHOOK_ALLOW_HTTP,
    )
    return record(claim, answer, sent_at)


def record(claim: Claim, answer: transport.Answer, sent_at: datetime) -> str:
    """The attempt's log row, the delivery's next step and the endpoint's health, in one transaction."""
    delivery = claim.delivery
    now = timezone.now()
    if answer.ok:
        outcome, changes = DELIVERED, {"state": WebhookDelivery.State.DELIVERED, "delivered_at": now}
        next_at = None
    else:
        next_at = now + backoff(claim.number)
        if next_at > delivery.retry_until:
            outcome, next_at = GAVE_UP, None
            changes = {"state": WebhookDelivery.State.FAILED}
        else:
            outcome, changes = RETRYING, {}
    with transaction.atomic():
        # Only the latest claim writes the delivery's state: a worker whose lease ran out (it cannot,
        # given the deadline, but a paused process can) only adds its log row.
        WebhookDelivery.objects.filter(pk=delivery.pk, attempts=claim.number).update(
            next_attempt_at=next_at, last_status=answer.status, last_error=answer.error, **changes
        )
        DeliveryAttempt.objects.create(
            delivery=delivery,
            number=claim.number,
            at=sent_at,
            duration_ms=answer.duration_ms,
            status_code=answer.status,
            response_excerpt=answer.body[:RESPONSE_EXCERPT_CHARS],
            error=answer.error,
            next_attempt_at=next_at,
        )
        _endpoint_health(delivery.endpoint_id, answer.ok, now)
    level = logging.INFO if answer.ok else logging.WARNING
    log.log(
        level,
        "webhook_%s delivery=%s endpoint=%s event=%s attempt=%d status=%s ms=%d error=%s",
        outcome,
        delivery.pk,
        delivery.endpoint_id,
        delivery.event.type,
        claim.number,
        answer.status,
        answer.duration_ms,
        answer.error[:200],
    )
    return outcome


def _endpoint_health(endpoint_id: int, ok: bool, now: datetime) -> None:
    """A success ends a failing streak; a streak of WEBHOOK_DISABLE_AFTER_DAYS disables the endpoint."""
    endpoints = WebhookEndpoint.objects.filter(pk=endpoint_id)
    if ok:
        endpoints.filter(failing_since__isnull=False).update(failing_since=None)
        return
    endpoints.filter(failing_since__isnull=True).update(failing_since=now)
    days = settings.WEBHOOK_DISABLE_AFTER_DAYS
    disabled = endpoints.filter(
        failing_since__lte=now - timedelta(days=days), disabled_at__isnull=True, active=True
    ).update(disabled_at=now, disabled_reason=f"Every delivery attempt failed for {days} days.")
    if disabled:
        log.error("webhook_endpoint_disabled endpoint=%s days=%d", endpoint_id, days)


def redeliver(delivery_ids: list[int], now: datetime) -> int:
    """Staff's "redeliver": due now, with a fresh retry window; the same event, the same ``webhook-id``."""
    return WebhookDelivery.objects.filter(pk__in=delivery_ids).update(
        state=WebhookDelivery.State.PENDING,
        next_attempt_at=now,
        retry_until=now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS),
    )
