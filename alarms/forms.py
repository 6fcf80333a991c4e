"""The rule form: a kind and a threshold whose unit follows the kind."""

from __future__ import annotations

from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError

from alarms.models import AlarmRule
from alarms.rules import SPECS, Kind, KindSpec, validate_threshold
from meters.models import Household

MAX_RULES = 50  # per household: more is a script, not a person

_STEPS = {0: "1", 2: "0.01", 3: "0.001"}


class AlarmRuleForm(forms.Form):
    kind = forms.ChoiceField(label="Tell me when", choices=Kind.choices, initial=Kind.DAILY_COST)
    # No max_digits here: rules.validate_threshold says what is wrong in the kind's own words.
    threshold = forms.DecimalField(label="Threshold", required=False, error_messages={"invalid": "Enter a number."})

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

    @property
    def step(self) -> str:
        return _STEPS.get(self.spec.places, "any")

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
            raise ValidationError(f"You have {MAX_RULES} alarms already: delete one before adding another.")
        threshold = cleaned["threshold"]
        if others.filter(kind=kind, threshold=threshold).exists():
            raise ValidationError("You already have this alarm.")
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
