"""Email backends for the outbox tests."""

from __future__ import annotations

import time

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend


class RefusingBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages) -> int:
        raise ConnectionRefusedError("[Errno 111] Connection refused")


class SlowBackend(LocmemBackend):
    """A mail server that takes its time: long enough for another worker to look for the same event."""

    def send_messages(self, messages) -> int:
        time.sleep(0.3)
        return super().send_messages(messages)
