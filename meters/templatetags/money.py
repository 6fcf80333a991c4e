"""Formatting money, energy and rates for people. One filter per unit; money always names its currency.

``{{ amount|money:"EUR" }}`` -> "EUR 2.14". Without a currency the filter refuses (pretix's
money_filter): an amount on a page must say what it is. Values are Decimal; rounding is half up.
The formatting itself is ``lib.money``'s, so mails and CSVs format the same way.
"""

from __future__ import annotations

from django import template

from lib.money import MISSING, as_decimal, fixed, format_kwh, format_money, format_rate

register = template.Library()


@register.filter
def money(value, currency: str = "") -> str:
    return format_money(value, currency)


@register.filter
def money_exact(value, currency: str = "") -> str:
    """All six decimal places a usage line carries, for detail tables."""
    if not currency:
        raise ValueError("money_exact needs a currency")
    amount = as_decimal(value)
    return MISSING if amount is None else f"{currency} {fixed(amount, 6)}"


@register.filter
def kwh(value, places: int = 2) -> str:
    return format_kwh(value, places)


@register.filter
def rate(value) -> str:
    return format_rate(value)


@register.filter
def sats(value) -> str:
    if value is None or value == "":
        return MISSING
    return f"{int(value):,} sat"
