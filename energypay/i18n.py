"""The language a person is written to in: their household's choice, else the language of the request.

Mails are rendered inside ``translation.override(language)`` (lib/mail.py); this module names the
language for the mails that do not go through it: Django's password reset.
"""

from __future__ import annotations

from django.contrib.auth import forms as auth_forms
from django.core.exceptions import ObjectDoesNotExist
from django.utils import translation


def language_of(user) -> str | None:
    """The user's household language; None for a login without a household (staff): the active language."""
    try:
        return user.household.language
    except (AttributeError, ObjectDoesNotExist):
        return None


class PasswordResetForm(auth_forms.PasswordResetForm):
    """Django's, with the mail in the account's language: a reset asked for from an English browser
    still reaches a Spanish household in Spanish."""

    def send_mail(self, subject_template_name, email_template_name, context, from_email, to_email, **kwargs):
        language = language_of(context.get("user")) or translation.get_language()
        with translation.override(language):
            super().send_mail(subject_template_name, email_template_name, context, from_email, to_email, **kwargs)
