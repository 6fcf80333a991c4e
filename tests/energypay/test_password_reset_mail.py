"""A password-reset link never reaches a log (issue 11).

Before, a server with DEBUG off and no EMAIL_HOST used Django's console backend: every reset mail, link
included, went to stdout, which is the server log under gunicorn and systemd. Now such a mail is not sent:
one log line says that a mail to whom went unsent, and `manage.py check` warns about a console backend.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.core.checks import run_checks
from django.urls import reverse

from tests.energypay.test_deploy_settings import manage
from tests.energypay.test_security import raw_logs

pytestmark = pytest.mark.django_db

LINK = "https://energypay.example/password-reset/MQ/cz9y1a-0123456789abcdef0123456789abcdef/"
SEND = (
    "from django.conf import settings; from django.core.mail import send_mail; print(settings.EMAIL_BACKEND); "
    f"send_mail('Reset your EnergyPay password', 'Choose a new password here: {LINK}', None, ['home@example.com'])"
)


def test_without_a_mail_host_and_debug_off_a_reset_mail_is_neither_printed_nor_logged():
    result = manage("shell", "--no-imports", "-c", SEND, EMAIL_HOST="", LOG_LEVEL="DEBUG")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "energypay.accounts.mail.UnsentMailBackend"
    assert "mail.unsent to=home@example.com" in result.stderr  # the operator learns that mail is not going out
    output = result.stdout + result.stderr
    assert "password-reset" not in output and "Choose a new password" not in output


def test_with_debug_on_mails_still_go_to_the_console_for_development():
    result = manage("shell", "--no-imports", "-c", SEND, EMAIL_HOST="", DEBUG="true", BSV_NETWORK="local")

    assert result.stdout.splitlines()[0] == "django.core.mail.backends.console.EmailBackend"
    assert LINK in result.stdout


def test_a_mail_host_sends_by_smtp():
    code = "from django.conf import settings; print(settings.EMAIL_BACKEND)"
    result = manage("shell", "--no-imports", "-c", code, EMAIL_HOST="smtp.example.com")
    assert result.stdout.strip() == "django.core.mail.backends.smtp.EmailBackend"


def test_the_reset_page_with_the_unsent_backend_logs_the_recipient_only(
    client, household, settings, monkeypatch, capfd
):
    settings.EMAIL_BACKEND = "energypay.accounts.mail.UnsentMailBackend"
    with raw_logs(monkeypatch) as logs:
        response = client.post(reverse("password_reset"), {"email": household.user.email})

    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert mail.outbox == []
    lines = "\n".join(logs.lines)
    assert f"mail.unsent to={household.user.email}" in lines
    printed = capfd.readouterr()
    for where in (lines, printed.out, printed.err):
        assert not re.search(r"password-reset/[^/\s]+/[^/\s]+", where)
        assert "Choose a new password" not in where


def test_check_warns_about_the_console_backend_with_debug_off(settings):
    settings.DEBUG = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

    assert "energypay.W001" in [message.id for message in run_checks()]

    settings.EMAIL_BACKEND = "energypay.accounts.mail.UnsentMailBackend"
    assert "energypay.W001" not in [message.id for message in run_checks()]


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (
            '127.0.0.1 "GET /password-reset/MQ/cz9y1a-0123456789abcdef/ HTTP/1.1" 302',
            '127.0.0.1 "GET /password-reset/MQ/[REDACTED]/ HTTP/1.1" 302',
        ),
        (f"mail body {LINK}", "mail body https://energypay.example/password-reset/MQ/[REDACTED]/"),
        ("GET /password-reset/MQ/set-password/ 200", "GET /password-reset/MQ/set-password/ 200"),
    ],
)
def test_a_reset_token_in_a_logged_path_is_redacted(line, shown):
    """Belt and braces for any log that shows request paths (an access log routed through LOGGING)."""
    from energypay.logging import redact

    assert redact(line, None) == shown
