"""Every mail goes through here: one template trio per mail, rendered in the recipient's language.

For a prefix ``alarms/email`` the templates are ``alarms/email_subject.txt`` (one line; whitespace
collapsed), ``alarms/email.txt`` (the text body) and, when it exists, ``alarms/email.html`` (sent as
the HTML alternative). Links in them come from ``lib.urls`` (one SITE_URL). Password reset mails
stay Django's (its view renders and sends them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from datetime import datetime

from django.core.mail import EmailMultiAlternatives
from django.template import TemplateDoesNotExist
from django.template.loader import render_to_string
from django.utils import timezone, translation


def render(
    template_prefix: str, context: Mapping[str, object], to: Sequence[str], language: str | None = None
) -> EmailMultiAlternatives:
    """The message, rendered now (so a broken template fails before anything is sent)."""
    with translation.override(language) if language else nullcontext():
        subject = " ".join(render_to_string(f"{template_prefix}_subject.txt", context).split())
        text = render_to_string(f"{template_prefix}.txt", context)
        try:
            html = render_to_string(f"{template_prefix}.html", context)
        except TemplateDoesNotExist:
            html = None
    message = EmailMultiAlternatives(subject, text, to=list(to))
    if html is not None:
        message.attach_alternative(html, "text/html")
    return message


def send(template_prefix: str, context: Mapping[str, object], to: Sequence[str], language: str | None = None) -> int:
    """Render and send one mail through the configured backend; returns how many were sent (0 or 1)."""
    return render(template_prefix, context, to, language).send()


def drain(send_next: Callable[[datetime], str | None], limit: int) -> Counter:
    """Run an outbox's ``send_next(now)`` until it finds nothing due or ``limit`` tries were made; the outcomes
    counted (alarm mails, statement mails: each claims one row per call, skipping locked ones)."""
    tally: Counter = Counter()
    for _ in range(limit):
        outcome = send_next(timezone.now())
        if outcome is None:
            break
        tally[outcome] += 1
    return tally
