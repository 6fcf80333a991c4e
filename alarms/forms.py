"""The rule form: a kind and a threshold whose unit follows the kind."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext, gettext_lazy

from alarms.models import AlarmRule
from alarms.rules import SPECS, Kind, KindSpec, validate_threshold
from lib.money import format_number
from meters.formfields import FiniteDecimalField
from meters.models import Household

MAX_RULES = 50  # per household: more is a script, not a person

# Above every kind's own maximum (rules.SPECS), so that below it the kind says what is wrong in its words;
# at most 7 whole digits and 3 places, which the model's threshold column (12 digits, 3 places) holds.
THRESHOLD_LIMIT = Decimal("1000000")


class ThresholdField(FiniteDecimalField):
    """A number from 0 to THRESHOLD_LIMIT in at most 12 digits, refused with one clear sentence.

    Python's Decimal reads 1e999999 and 0E-1000000; such values must stop here, never reach a query
    (PostgreSQL's numeric overflows: a 500). Only the first refusal is shown: 1e999999 is too large,
    which says it all.
    """

    def __init__(self, **kwargs) -> None:
        messages = {
            "invalid": gettext_lazy("Enter a number."),
            "min_value": gettext_lazy("The threshold cannot be negative."),
            "max_value": gettext_lazy("That is more than %(limit)s: please check the number."),
            "max_digits": gettext_lazy("Enter a number of at most 12 digits."),
        }
        super().__init__(
            min_value=Decimal(0), max_value=THRESHOLD_LIMIT, max_digits=12, error_messages=messages, **kwargs
        )

    def run_validators(self, value: Decimal | None) -> None:
        if value in self.empty_values:
            return
        for validator in self.validators:  # Django's order: max, min, then the digits
            try:
                validator(value)
            except ValidationError as error:
                if getattr(error, "code", None) in self.error_messages:
                    error.message = self.error_messages[error.code]
                    # The limit as the reader writes numbers ("1,000,000" or "1.000.000").
                    error.params = {**(error.params or {}), "limit": format_number(THRESHOLD_LIMIT, 0)}
                raise ValidationError(error.message, code=error.code, params=error.params) from None


class AlarmRuleForm(forms.Form):
    kind = forms.ChoiceField(label=gettext_lazy("Tell me when"), choices=Kind.choices, initial=Kind.DAILY_COST)
    threshold = ThresholdField(label=gettext_lazy("Threshold"), required=False)

    def __init__(self, *args, household: Household, rule: AlarmRule | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.household, self.rule = household, rule

    @property
    def kind_value(self) -> str:
        """The kind the form shows: what was posted, else the initial one (a junk kind falls back)."""
        value = self.data.get("kind") if self.is_bound else self.initial.get("kind", self.fields["kind"].initial)
        return value if value in SPECS else Kind.DAILY_COST

    @property
    def spec(self) -> KindSpec:
        return SPECS[self.kind_value]

    def clean(self) -> dict:
        cleaned = super().clean()
        kind = cleaned.get("kind")
        if kind is None or "threshold" in self.errors:
            return cleaned
        try:
            cleaned["threshold"] = validate_threshold(kind, cleaned.get("threshold"))
        except ValidationError as error:
            self.add_error("threshold", error)
            return cleaned
        others = AlarmRule.objects.filter(household=self.household)
        if self.rule is not None:
            others = others.exclude(pk=self.rule.pk)
        elif others.count() >= MAX_RULES:
            raise ValidationError(
                gettext("You have %(count)s alarms already: delete one before adding another.") % {"count": MAX_RULES}
            )
        threshold = cleaned["threshold"]
        if others.filter(kind=kind, threshold=threshold).exists():
            raise ValidationError(gettext("You already have this alarm."))
        return cleaned

    @staticmethod
    def initial_from(query) -> dict:
        """Initial values from a query string (the kind select re-renders the form with what was typed)."""
        initial: dict[str, str | Decimal] = {}
        if query.get("kind") in SPECS:
            initial["kind"] = query["kind"]
        if query.get("threshold"):
            initial["threshold"] = query["threshold"][:20]
        return initial
