"""Mailing notifications the household wants by mail: retried with backoff until sent, never dropped.

The alarm mails' outbox, again (alarms/notify.py says why it is at-least-once and where its one
window for a duplicate is): each due row is locked alone (``SELECT ... FOR UPDATE SKIP LOCKED``),
rendered, sent and marked in one short transaction; a failure moves its next attempt.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F

from energypay.notifications.models import Notification
from lib import mail
from lib.backoff import schedule
from lib.urls import absolute_reverse

log = logging.getLogger(__name__)

BATCH = 200
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)


def send_due(limit: int = BATCH) -> Counter:
    """Mail up to ``limit`` due notifications, oldest first; returns how many were sent and how many failed."""
    return mail.drain(send_next, limit)


def send_next(now: datetime) -> str | None:
    with transaction.atomic():
        row = (
            Notification.objects.mail_due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("household__user")
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if row is None:
            return None
        try:
            household = row.household
            context = {"notification": row, "household": household, "link": absolute_reverse("notifications")}
            to = [household.user.email]
            message = mail.render("notifications/email", context, to=to, language=household.language)
            if message.send() != 1:
                raise RuntimeError("the email backend sent nothing")
        except Exception as error:  # any backend failure: SMTP, DNS, a refused address, a broken template
            attempts = row.attempts + 1
            Notification.objects.filter(pk=row.pk).update(
                attempts=attempts,
                next_attempt_at=now + schedule(attempts - 1, first=FIRST_RETRY, cap=LONGEST_WAIT),
                last_error=f"{type(error).__name__}: {error}"[:2000],
            )
            log.warning("notification_mail_failed notification=%s attempts=%d error=%s", row.pk, attempts, error)
            return "failed"
        Notification.objects.filter(pk=row.pk).update(
            mailed_at=now, next_attempt_at=None, attempts=F("attempts") + 1, last_error=""
        )
    log.info("notification_mailed notification=%s household=%s kind=%s", row.pk, row.household_id, row.kind)
    return "sent"
