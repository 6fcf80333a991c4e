"""The household's choice of channel per kind of notification: one checkbox per kind and channel."""

from __future__ import annotations

from django import forms

from energypay.notifications import kinds


class PreferencesForm(forms.Form):
    """Fields ``<kind>:badge`` and ``<kind>:email`` for every kind (an unticked box is absent from the POST: False)."""

    def __init__(self, *args, initial_choices: dict[str, dict[str, bool]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for code in kinds.CODES:
            for channel in ("badge", "email"):
                self.fields[f"{code}:{channel}"] = forms.BooleanField(
                    required=False, initial=initial_choices[code][channel]
                )

    def rows(self) -> list[tuple[str, str, forms.BoundField, forms.BoundField]]:
        return [(code, kinds.title(code), self[f"{code}:badge"], self[f"{code}:email"]) for code in kinds.CODES]

    def choices(self) -> dict[str, dict[str, bool]]:
        data = self.cleaned_data
        return {code: {"badge": data[f"{code}:badge"], "email": data[f"{code}:email"]} for code in kinds.CODES}
