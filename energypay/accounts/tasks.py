from __future__ import annotations

import logging
from datetime import timedelta

from axes.models import AccessAttempt, AccessLog
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from energypay.accounts.models import Session

logger = logging.getLogger(__name__)


@shared_task
def prune_login_records() -> None:
    """Retention for the login tables, daily from beat:
    1. successful logins (axes' AccessLog: who, from where, when) older than LOGIN_LOG_DAYS;
    2. failed attempts older than the cool-off, which no longer lock anything (axes also drops them at the
       next login, but a quiet site has none);
    3. expired sessions, which log nobody in any more (Django's ``clearsessions``).
    """
    now = timezone.now()
    logs, _ = AccessLog.objects.filter(attempt_time__lt=now - timedelta(days=settings.LOGIN_LOG_DAYS)).delete()
    attempts, _ = AccessAttempt.objects.filter(attempt_time__lt=now - settings.AXES_COOLOFF_TIME).delete()
    sessions, _ = Session.objects.filter(expire_date__lt=now).delete()
    logger.info("login_records.pruned access_logs=%s attempts=%s sessions=%s", logs, attempts, sessions)
