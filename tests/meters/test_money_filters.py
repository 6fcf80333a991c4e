"""The template filters that put money, energy and rates on pages."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.template import Context, Template
from django.utils import translation

from meters.templatetags.money import kwh, money, money_exact, rate, sats


def test_money_rounds_half_up_to_cents_and_names_the_currency():
    assert money(Decimal("2.145"), "EUR") == "€2.15"
    assert money(Decimal("1234567.5"), "EUR") == "€1,234,567.50"
    assert money(Decimal("0"), "EUR") == "€0.00"


def test_money_does_not_hide_a_charge_smaller_than_a_cent():
    assert money(Decimal("0.000004"), "EUR") == "< €0.01"
    assert money(Decimal("-0.003"), "EUR") == "-< €0.01"


def test_money_refuses_to_format_without_a_currency():
    with pytest.raises(ValueError, match="currency"):
        money(Decimal("1"))
    with pytest.raises(ValueError, match="currency"):
        Template("{% load money %}{{ amount|money }}").render(Context({"amount": Decimal("1")}))


def test_money_refuses_floats_which_have_already_lost_the_exact_amount():
    with pytest.raises(TypeError):
        money(0.1, "EUR")


def test_missing_values_show_a_dash_not_zero():
    for formatted in (money(None, "EUR"), money_exact(None, "EUR"), kwh(None), rate(None), sats(None)):
        assert formatted == "\N{EN DASH}"


def test_exact_money_keeps_the_six_places_a_usage_line_carries():
    assert money_exact(Decimal("0.0312505"), "EUR") == "€0.031251"


def test_energy_rate_and_satoshis():
    assert kwh(Decimal("12.3456")) == "12.35 kWh"
    assert kwh(Decimal("12.3456"), 3) == "12.346 kWh"
    assert rate(Decimal("0.25")) == "€0.2500/kWh"
    assert sats(50295518) == "50,295,518 sat"


NBSP = "\N{NO-BREAK SPACE}"


def test_spanish_readers_get_a_decimal_comma_and_the_euro_sign_after_the_amount():
    with translation.override("es"):
        assert money(Decimal("0.42"), "EUR") == f"0,42{NBSP}€"
        assert money(Decimal("1234567.5"), "EUR") == f"1.234.567,50{NBSP}€"
        assert money(Decimal("2.145"), "EUR") == f"2,15{NBSP}€"  # half up, not half even
        assert money(Decimal("0.000004"), "EUR") == f"< 0,01{NBSP}€"
        assert money_exact(Decimal("0.0312505"), "EUR") == f"0,031251{NBSP}€"
        assert kwh(Decimal("12.3456"), 3) == "12,346 kWh"
        assert rate(Decimal("0.25")) == f"0,2500{NBSP}€/kWh"
        assert sats(50295518) == "50.295.518 sat"


def test_the_filter_in_a_template_follows_the_active_language():
    template = Template('{% load money %}{{ amount|money:"EUR" }}')
    context = Context({"amount": Decimal("0.42")})
    assert template.render(context) == "€0.42"
    with translation.override("es"):
        assert template.render(context) == f"0,42{NBSP}€"
