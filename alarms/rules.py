"""What a household can ask to be told about: the alarm kinds, their sentences, units and limits.

Thresholds are inclusive, in both directions: "an hour costs EUR 1.00 or more" fires at exactly
EUR 1.00, "my balance is EUR 10.00 or less" at exactly EUR 10.00. A household that types 5 means
"5 is already too much"; the sentences say "or more" / "or less" so nobody has to guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from lib.money import MISSING, format_kwh, format_money, format_number


class Kind(models.TextChoices):
    # The labels carry the unit, so the form says what the number means even without JavaScript.
    HOURLY_COST = "hourly_cost", _("An hour costs at least … (EUR)")
    DAILY_COST = "daily_cost", _("A day costs at least … (EUR)")
    HOURLY_ENERGY = "hourly_energy", _("An hour uses at least … (kWh)")
    MONTH_PROJECTED = "month_projected", _("This month is on course to cost at least … (EUR)")
    BALANCE_BELOW = "balance_below", _("My balance is at most … (EUR)")
    BALANCE_DAYS = "balance_days", _("My balance lasts at most … (days)")
    METER_SILENT = "meter_silent", _("A meter is silent for at least … (hours)")
    SETTLEMENT_FAILED = "settlement_failed", _("A payment fails or I fall behind (no threshold)")


ABOVE, BELOW = "above", "below"


@dataclass(frozen=True)
class KindSpec:
    unit: str  # "EUR", "kWh", "days", "hours"; "" for a kind without a threshold
    sentence: Promise  # "Tell me when ...", translatable, with %(threshold)s where the amount goes
    direction: str | None  # ABOVE: value >= threshold fires; BELOW: value <= threshold; None: no threshold
    places: int = 0  # decimal places a threshold may have
    maximum: Decimal | None = None  # anything larger is a typo, not a wish
    zero_allowed: bool = False

    @property
    def takes_threshold(self) -> bool:
        return self.direction is not None


_EUR_MAX, _KWH_MAX, _DAYS_MAX, _HOURS_MAX = Decimal("100000"), Decimal("1000"), Decimal("365"), Decimal("720")

SPECS: dict[str, KindSpec] = {
    Kind.HOURLY_COST: KindSpec("EUR", _("Tell me when an hour costs %(threshold)s or more"), ABOVE, 2, _EUR_MAX),
    Kind.DAILY_COST: KindSpec("EUR", _("Tell me when a day costs %(threshold)s or more"), ABOVE, 2, _EUR_MAX),
    Kind.HOURLY_ENERGY: KindSpec("kWh", _("Tell me when an hour uses %(threshold)s or more"), ABOVE, 3, _KWH_MAX),
    Kind.MONTH_PROJECTED: KindSpec(
        "EUR", _("Tell me when this month is on course to cost %(threshold)s or more"), ABOVE, 2, _EUR_MAX
    ),
    # EUR 0 is meaningful here: "tell me when my wallet is empty".
    Kind.BALANCE_BELOW: KindSpec(
        "EUR", _("Tell me when my balance is %(threshold)s or less"), BELOW, 2, _EUR_MAX, zero_allowed=True
    ),
    Kind.BALANCE_DAYS: KindSpec(
        "days", _("Tell me when my balance will last %(threshold)s or less"), BELOW, 0, _DAYS_MAX
    ),
    Kind.METER_SILENT: KindSpec(
        "hours", _("Tell me when a meter has been silent for %(threshold)s or more"), ABOVE, 0, _HOURS_MAX
    ),
    Kind.SETTLEMENT_FAILED: KindSpec("", _("Tell me when a payment fails or I fall behind on payments"), None),
}

# Where each kind's data changes, so each trigger evaluates only the kinds it can move.
USAGE_KINDS = frozenset({Kind.HOURLY_COST, Kind.DAILY_COST, Kind.HOURLY_ENERGY, Kind.MONTH_PROJECTED})
SETTLEMENT_KINDS = frozenset({Kind.BALANCE_BELOW, Kind.BALANCE_DAYS, Kind.SETTLEMENT_FAILED})
# Time alone moves these (a meter falls silent, a debt ages, the price of BSV moves a balance in EUR).
PERIODIC_KINDS = frozenset({Kind.METER_SILENT, Kind.BALANCE_DAYS, Kind.SETTLEMENT_FAILED, Kind.BALANCE_BELOW})


def format_amount(kind: str, value: Decimal | None) -> str:
    """A threshold or a measured value in the kind's unit: "€5.00", "3.000 kWh", "7 days" (the reader's conventions)."""
    if value is None:
        return MISSING
    unit = SPECS[kind].unit or "EUR"  # a settlement alarm's value is what is owed
    if unit == "EUR":
        return format_money(value, "EUR")
    if unit == "kWh":
        return format_kwh(value, 3)
    number = value.quantize(Decimal("0.1")).normalize()
    whole = number == number.to_integral_value()
    shown = format_number(number, 0 if whole else 1)
    # gettext picks plural forms for whole numbers only; a fraction ("1.5 days") takes the plural.
    count = int(number) if whole else 2
    if unit == "days":
        return ngettext("%(number)s day", "%(number)s days", count) % {"number": shown}
    return ngettext("%(number)s hour", "%(number)s hours", count) % {"number": shown}


def describe(kind: str, threshold: Decimal | None) -> str:
    """The rule as the household would say it: "Tell me when a day costs EUR 5.00 or more".

    Rendered when shown (a page, the admin, a mail), in the active language: events store the kind
    and the threshold, never this sentence.
    """
    spec = SPECS.get(kind)
    if spec is None:
        return gettext("Unknown alarm")
    return str(spec.sentence) % {"threshold": format_amount(kind, threshold)}


# --- Facts: what an event found besides its value, as a stable code and the numbers of its sentence ---

REFUSED = "settlement.failed"  # {"count": payments the network refused in the last 24 hours}
OVERDUE = "settlement.overdue"  # {"eur": "0.400000", "before": ISO 8601 UTC}: owed for hours before then


def refused_fact(count: int) -> dict[str, Any]:
    return {"code": REFUSED, "count": count}


def overdue_fact(eur: Decimal, before: datetime) -> dict[str, Any]:
    return {"code": OVERDUE, "eur": str(eur), "before": before.astimezone(UTC).isoformat()}


def render_fact(fact: Mapping[str, Any]) -> str:
    """One fact as a sentence in the active language; a code this version does not know shows as itself."""
    code = fact.get("code")
    if code == REFUSED:
        count = int(fact["count"])
        return ngettext(
            "%(count)s payment refused by the network in the last 24 hours",
            "%(count)s payments refused by the network in the last 24 hours",
            count,
        ) % {"count": count}
    if code == OVERDUE:
        amount = format_amount(Kind.SETTLEMENT_FAILED, Decimal(fact["eur"]))
        # In the reader's time zone: a household page's (meters/access.py) or a mail's ({% timezone %}),
        # which name it once; elsewhere (the admin, logs) UTC, named here.
        before = timezone.localtime(datetime.fromisoformat(fact["before"]).astimezone(UTC))
        if timezone.get_current_timezone_name() == "UTC":
            return gettext("%(amount)s unpaid for hours before %(time)s UTC") % {
                "amount": amount,
                "time": f"{before:%H:%M}",
            }
        return gettext("%(amount)s unpaid for hours before %(time)s") % {"amount": amount, "time": f"{before:%H:%M}"}
    return str(code or "")


def render_facts(facts: Iterable[Mapping[str, Any]]) -> str:
    return "; ".join(render_fact(fact) for fact in facts)


_AMOUNT_WORDS = {
    "EUR": _("Enter an amount in EUR."),
    "kWh": _("Enter an amount in kWh."),
    "days": _("Enter a number of days."),
    "hours": _("Enter a number of hours."),
}


def validate_threshold(kind: str, threshold: Decimal | None) -> Decimal | None:
    """The threshold to store for ``kind``, or a ValidationError that says what to enter instead."""
    spec = SPECS.get(kind)
    if spec is None:
        raise ValidationError(gettext("Choose what the alarm should watch."), code="kind")
    if not spec.takes_threshold:
        if threshold is not None:
            raise ValidationError(gettext("This alarm takes no threshold: leave the field empty."), code="no_threshold")
        return None
    if threshold is None:
        raise ValidationError(str(_AMOUNT_WORDS[spec.unit]), code="required")
    try:
        if not threshold.is_finite():
            raise InvalidOperation
    except (AttributeError, InvalidOperation):
        raise ValidationError(gettext("Enter a number."), code="invalid") from None
    if threshold < 0:
        raise ValidationError(gettext("The threshold cannot be negative."), code="negative")
    if threshold == 0 and not spec.zero_allowed:
        if spec.unit == "days":
            raise ValidationError(gettext("Enter at least 1 day."), code="zero")
        if spec.unit == "hours":
            raise ValidationError(gettext("Enter at least 1 hour."), code="zero")
        raise ValidationError(
            gettext("%(amount)s would fire all the time: enter more than 0.")
            % {"amount": format_amount(kind, Decimal(0))},
            code="zero",
        )
    if spec.maximum is not None and threshold > spec.maximum:
        limit = format_kwh(spec.maximum, 0) if spec.unit == "kWh" else format_amount(kind, spec.maximum)
        raise ValidationError(
            gettext("That is more than %(limit)s: please check the number.") % {"limit": limit}, code="absurd"
        )
    if -threshold.normalize().as_tuple().exponent > spec.places:
        if spec.unit == "days":
            raise ValidationError(gettext("Enter a whole number of days."), code="places")
        if spec.unit == "hours":
            raise ValidationError(gettext("Enter a whole number of hours."), code="places")
        raise ValidationError(
            ngettext("Use at most %(places)s decimal place.", "Use at most %(places)s decimal places.", spec.places)
            % {"places": spec.places},
            code="places",
        )
    # One spelling per value: 0E-1000000 and -0 are 0.00, and an exponent never reaches a query.
    return threshold.quantize(Decimal(1).scaleb(-spec.places)).copy_abs()
