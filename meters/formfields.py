"""Form fields shared by the apps' forms and the admin. Framework code only; no models."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError


class FiniteDecimalField(forms.DecimalField):
    """A DecimalField that refuses NaN and the infinities while parsing, not only when validating.

    It reads numbers as the reader writes them (``localize``): in Spanish "3,50" is 3.50 (and "3.50"
    still is); in English a comma is refused rather than guessed to be a thousands separator.

    Django's own refuses them in validate(), after to_python(). But a formset (an admin inline) first
    compares each form's value with its initial one (has_changed), and comparing a Decimal with a
    signalling NaN ("sNaN") raises InvalidOperation: a 500 instead of "Enter a number."
    """

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("localize", True)
        super().__init__(**kwargs)

    def to_python(self, value) -> Decimal | None:
        number = super().to_python(value)
        if number is not None and not number.is_finite():
            raise ValidationError(self.error_messages["invalid"], code="invalid")
        return number
