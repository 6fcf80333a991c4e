"""Formatting money, energy and rates for people. One filter per unit; money always names its currency.

``{{ amount|money:"EUR" }}`` -> "EUR 2.14". Without a currency the filter refuses (pretix's
money_filter): an amount on a page must say what it is. Values are Decimal; rounding is half up.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import template
from django.utils.formats import number_format

register = template.Library()

_PLACES = {"EUR": 2}
MISSING = "\N{EN DASH}"  # what a table cell shows for no value


def _decimal(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, float):
        raise TypeError("money values are Decimal, never float")
    try:
        return Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None


def _fixed(value: Decimal, places: int) -> str:
    quantum = Decimal(1).scaleb(-places)
    return number_format(value.quantize(quantum, rounding=ROUND_HALF_UP), places, use_l10n=False, force_grouping=True)


@register.filter
def money(value, currency: str = "") -> str:
    if not currency:
        raise ValueError("money needs a currency: {{ amount|money:'EUR' }}")
    amount = _decimal(value)
    if amount is None:
        return MISSING
    places = _PLACES.get(currency, 2)
    # A few micro-euros would show as 0.00: say so rather than hide that something was charged.
    if amount and abs(amount) < Decimal("0.005"):
        return f"{'-' if amount < 0 else ''}< {currency} 0.01"
    return f"{currency} {_fixed(amount, places)}"


@register.filter
def money_exact(value, currency: str = "") -> str:
    """All six decimal places a usage line carries, for detail tables."""
    if not currency:
        raise ValueError("money_exact needs a currency")
    amount = _decimal(value)
    return MISSING if amount is None else f"{currency} {_fixed(amount, 6)}"


@register.filter
def kwh(value, places: int = 2) -> str:
    amount = _decimal(value)
    return MISSING if amount is None else f"{_fixed(amount, int(places))} kWh"


@register.filter
def rate(value) -> str:
    amount = _decimal(value)
    return MISSING if amount is None else f"EUR {_fixed(amount, 4)}/kWh"


@register.filter
def sats(value) -> str:
    if value is None or value == "":
        return MISSING
    return f"{number_format(int(value), 0, use_l10n=False, force_grouping=True)} sat"
