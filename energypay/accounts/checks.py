"""System checks for the login settings: `manage.py check` and every server start say what would leak."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Tags, Warning, register

CONSOLE_BACKEND = "django.core.mail.backends.console.EmailBackend"


@register(Tags.security)
def mail_not_printed(app_configs, **kwargs) -> list[Warning]:
    """With DEBUG off the console backend prints password-reset links into the server log."""
    if settings.DEBUG or settings.EMAIL_BACKEND != CONSOLE_BACKEND:
        return []
    return [
        Warning(
            "EMAIL_BACKEND is the console backend with DEBUG off: every mail, password-reset links included, "
            "is printed to the server log.",
            hint="Set EMAIL_HOST (SMTP), or unset EMAIL_BACKEND: without EMAIL_HOST mails are then logged as "
            "unsent, without their content.",
            id="energypay.W001",
        )
    ]
