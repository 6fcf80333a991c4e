"""Mailing alarm events from the outbox: retried with backoff until sent, never dropped.

Delivery is at-least-once. Each event is mailed inside its own short transaction that holds the
event's row lock (``SELECT ... FOR UPDATE SKIP LOCKED``): two workers never mail the same event, and
a worker skips rows another is mailing instead of waiting. The message is rendered before the
backend is called, so the only window for a duplicate is between the backend accepting the message
and the COMMIT of ``notified_at`` right after it (one UPDATE): if the process dies or loses its
database connection exactly there, the event is still due and is mailed again on the next run.
Nothing else can send twice, and nothing can lose an event: a failure only moves its next attempt.

The lock is held for one send at most (EMAIL_TIMEOUT), so a page marking that very event read may
wait that long; no other writer touches a due event.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import F

from alarms.models import AlarmEvent
from lib import mail
from lib.backoff import schedule
from lib.urls import absolute_reverse

log = logging.getLogger(__name__)

BATCH = 200  # events per run; the beat job runs every minute and the rest wait for the next run
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    """Wait before attempt ``attempts + 1``: 1, 2, 4, 8 ... minutes, at most 6 hours; never giving up."""
    return schedule(attempts - 1, first=FIRST_RETRY, cap=LONGEST_WAIT)


def send_due(limit: int = BATCH) -> Counter:
    """Mail up to ``limit`` due events, oldest first. Returns how many were sent and how many failed.

    Per event, in one transaction: 1. lock the oldest due event, skipping locked ones; 2. render and
    send it; 3. record the outcome: sent (``notified_at``), or failed (attempts + 1, the error, and
    the next attempt after an exponential backoff). A failed event moves into the future, so one
    bad event cannot stall the rest.
    """
    return mail.drain(send_next, limit)


def send_next(now: datetime) -> str | None:
    with transaction.atomic():
        event = (
            AlarmEvent.objects.due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("household__user")
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if event is None:
            return None
        try:
            message = _message(event)
            if message.send() != 1:
                raise RuntimeError("the email backend sent nothing")
        except Exception as error:  # any backend failure: SMTP, DNS, a refused address, a broken template
            attempts = event.attempts + 1
            AlarmEvent.objects.filter(pk=event.pk).update(
                attempts=attempts,
                next_attempt_at=now + backoff(attempts),
                last_error=f"{type(error).__name__}: {error}"[:2000],
            )
            log.warning("alarm_mail_failed event=%s attempts=%d error=%s", event.pk, attempts, error)
            return "failed"
        # The at-least-once window: from here to the COMMIT at the end of this block.
        AlarmEvent.objects.filter(pk=event.pk).update(
            notified_at=now, attempts=F("attempts") + 1, next_attempt_at=None, last_error=""
        )
    log.info("alarm_mailed event=%s household=%s", event.pk, event.household_id)
    return "sent"


def _message(event: AlarmEvent) -> EmailMessage:
    """The mail of ``event``, rendered before it is sent (alarms/email_subject.txt, alarms/email.txt)."""
    context = {
        "event": event,
        "household": event.household,
        "tz": event.household.timezone,
        "link": absolute_reverse("alarm-list"),
    }
    household = event.household
    return mail.render("alarms/email", context, to=[household.user.email], language=household.language)
