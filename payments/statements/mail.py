"""Mailing statements with their PDF: an outbox of deliveries, retried with backoff until sent, never dropped.

The shape of the alarm mails (alarms/notify.py): a delivery row is written in the transaction that
issues the statement (or, for a re-send, by the staff action, with who asked), and beat's
``send_statement_mail`` sends what is due, each delivery in its own short transaction holding its
row lock (``SELECT ... FOR UPDATE SKIP LOCKED``), so two workers never send the same one. The mail
is rendered, PDF included, before the backend is called; the only window for a duplicate is between
the backend accepting it and the COMMIT of ``sent_at`` right after. A failure moves the next attempt
(1 minute, doubling, at most 6 hours) and keeps the error for staff. A household without an email
address gets its statement on its page; its delivery says "no email address" in the admin.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from lib import mail
from lib.backoff import schedule
from lib.urls import absolute_reverse
from payments.statements.models import Statement, StatementDelivery
from payments.statements.rendering import pdf_bytes

log = logging.getLogger(__name__)

BATCH = 100  # deliveries per run; rendering a PDF takes tens of milliseconds, the rest wait a minute
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)
NO_ADDRESS = "no email address"


def backoff(attempts: int) -> timedelta:
    return schedule(attempts - 1, first=FIRST_RETRY, cap=LONGEST_WAIT)


def queue_deliveries(
    statements: Iterable[Statement], *, requested_by=None, reason: str = StatementDelivery.Reason.ISSUED
) -> list[StatementDelivery]:
    """One delivery per statement, due now, to the address its customer snapshot holds (in the caller's transaction)."""
    now = timezone.now()
    deliveries = []
    for statement in statements:
        to = (statement.customer or {}).get("email") or ""
        deliveries.append(
            StatementDelivery(
                statement=statement,
                to=to,
                reason=reason,
                requested_by=requested_by,
                next_attempt_at=now if to else None,
                skip_reason="" if to else NO_ADDRESS,
            )
        )
    return StatementDelivery.objects.bulk_create(deliveries)


def resend(statement: Statement, *, acting_user) -> StatementDelivery:
    """Staff send a statement again: a new delivery to the household's current address, logged with who asked."""
    statement = Statement.objects.select_related("household__user").get(pk=statement.pk)
    with transaction.atomic():
        delivery = StatementDelivery.objects.create(
            statement=statement,
            to=statement.household.user.email or "",
            reason=StatementDelivery.Reason.RESENT,
            requested_by=acting_user,
        )
        if delivery.to:
            StatementDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=delivery.created_at)
        else:
            StatementDelivery.objects.filter(pk=delivery.pk).update(skip_reason=NO_ADDRESS)
    log.warning("statement_resend statement=%s delivery=%s by=%s", statement.code, delivery.pk, acting_user.pk)
    delivery.refresh_from_db()
    return delivery


def send_due(limit: int = BATCH) -> Counter:
    """Mail up to ``limit`` due deliveries, oldest first. Returns how many were sent and how many failed."""
    return mail.drain(send_next, limit)


def send_next(now: datetime) -> str | None:
    """Lock the oldest due delivery (skipping locked ones), render and send it, record the outcome; one transaction."""
    with transaction.atomic():
        delivery = (
            StatementDelivery.objects.due(now)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("statement")
            .order_by("next_attempt_at", "pk")
            .first()
        )
        if delivery is None:
            return None
        try:
            message = _message(delivery)
            if message.send() != 1:
                raise RuntimeError("the email backend sent nothing")
        except Exception as error:  # any failure: SMTP, DNS, a refused address, a template, the PDF
            attempts = delivery.attempts + 1
            StatementDelivery.objects.filter(pk=delivery.pk).update(
                attempts=attempts,
                next_attempt_at=now + backoff(attempts),
                last_error=f"{type(error).__name__}: {error}"[:2000],
            )
            log.warning("statement_mail_failed delivery=%s attempts=%d error=%s", delivery.pk, attempts, error)
            return "failed"
        # The at-least-once window: from here to the COMMIT at the end of this block.
        StatementDelivery.objects.filter(pk=delivery.pk).update(
            sent_at=now, attempts=F("attempts") + 1, next_attempt_at=None, last_error=""
        )
    log.info("statement_mailed delivery=%s statement=%s", delivery.pk, delivery.statement.code)
    return "sent"


def _message(delivery: StatementDelivery):
    """The mail (statements/email_subject.txt, statements/email.txt) with the statement's PDF attached."""
    statement = delivery.statement
    context = {
        "statement": statement,
        "name": (statement.customer or {}).get("name", ""),
        "tz": statement.timezone,
        "link": absolute_reverse("statement-detail", statement.pk),
    }
    message = mail.render("statements/email", context, to=[delivery.to], language=statement.language)
    message.attach(f"{statement.file_stem}.pdf", pdf_bytes(statement), "application/pdf")
    return message
