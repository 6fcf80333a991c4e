"""Formatting money, energy and rates for people. One filter per unit; money always names its currency.

``{{ amount|money:"EUR" }}`` -> "€2.14" in English, "2,14 €" in Spanish (the active language's
conventions). Without a currency the filter refuses (pretix's money_filter): an amount on a page
must say what it is. Values are Decimal; rounding is half up. The formatting itself is
``lib.money``'s, so mails, charts and statements format the same way.
"""

from __future__ import annotations

from django import template

from lib.money import format_kwh, format_money, format_rate, format_sats

register = template.Library()


@register.filter
def money(value, currency: str = "") -> str:
    return format_money(value, currency)


@register.filter
def money_exact(value, currency: str = "") -> str:
    """All six decimal places a usage line carries, for detail tables."""
    if not currency:
        raise ValueError("money_exact needs a currency")
    return format_money(value, currency, places=6)


@register.filter
def kwh(value, places: int = 2) -> str:
    return format_kwh(value, places)


@register.filter
def rate(value) -> str:
    return format_rate(value)


@register.filter
def sats(value) -> str:
    return format_sats(value)
