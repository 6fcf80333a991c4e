"""Celery tasks: thin wrappers (docs/architecture.md, "Conventions")."""

from __future__ import annotations

from celery import shared_task

from energypay.notifications import mailing


@shared_task
def send_mail() -> dict:
    return dict(mailing.send_due())
