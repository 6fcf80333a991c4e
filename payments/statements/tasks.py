"""Celery tasks: thin wrappers around the statement jobs; CELERY_BEAT_SCHEDULE runs the periodic ones."""

from __future__ import annotations

from datetime import date

from celery import shared_task
from django.utils import timezone

from payments.statements import corrections, issuing, mail
from payments.statements.verifactu import sending


@shared_task
def issue_due_statements() -> int:
    """Beat, hourly: fan the statements due (months closed by each household's clock) out, a chunk per task."""
    count = 0
    for batch in issuing.due(timezone.now()):
        for start in range(0, len(batch.household_ids), issuing.CHUNK):
            chunk = batch.household_ids[start : start + issuing.CHUNK]
            issue_statement_chunk.delay(chunk, batch.month.isoformat())
            count += len(chunk)
    return count


@shared_task(acks_late=True)
def issue_statement_chunk(household_ids: list[int], month: str) -> dict:
    """Issue a month's statements for households still missing them (a rerun issues nothing twice)."""
    return dict(issuing.issue_households(household_ids, date.fromisoformat(month)))


@shared_task
def correct_statements() -> dict:
    """Beat, daily: corrective notes for recent closed months whose ledger changed after their statement."""
    return dict(corrections.check())


@shared_task
def send_statement_mail() -> dict:
    """Beat, every minute: mail what the statements' outbox holds."""
    return dict(mail.send_due())


@shared_task
def send_invoice_records() -> dict:
    """Beat, every 30 s: the VERI*FACTU records waiting for the AEAT, when VERIFACTU_SEND_ENABLED."""
    return dict(sending.send_due())
