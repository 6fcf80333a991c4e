"""The mail backend for a server with no mail relay (DEBUG off, no EMAIL_HOST): nothing is sent, nothing is printed.

Django's console backend would write each mail, password-reset link included, to stdout: the server log,
which more people read than should be able to take over an account. This backend logs that a mail went
unsent and to whom, never its body or subject, so operators see that EMAIL_HOST is missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage

logger = logging.getLogger(__name__)


class UnsentMailBackend(BaseEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        for message in email_messages:
            logger.warning(
                "mail.unsent to=%s reason=no_email_host (set EMAIL_HOST to send mail)",
                ",".join(message.recipients()),
            )
        return 0
