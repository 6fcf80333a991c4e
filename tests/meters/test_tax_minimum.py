"""The electricity tax's minimum per MWh over a statement period and its zero-consumption rule
(Ley 38/1992 art. 99.2, docs/spain.md "Taxes"), figures worked by hand. Hours are taxed one by one;
the period's true-up is what ``minimum_true_ups`` states."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from meters.models import TaxRule
from meters.taxes import TaxPart, minimum_true_ups
from tests.meters.taxkit import IEE, rule

pytestmark = pytest.mark.django_db
ALL = ["energy", "power", "rental"]


def part(made: TaxRule, base: str, kwh: str, vat_of: Decimal = Decimal(0)) -> TaxPart:
    found = TaxPart(made, base=Decimal(base) + vat_of, kwh=Decimal(kwh), lines=1)
    found.amount = found.base * made.rate
    return found


def iee(minimum: str | None = "1", **fields) -> TaxRule:
    return rule("iee", IEE, kinds=["energy", "power"], minimum_eur_per_mwh=minimum and Decimal(minimum), **fields)


def test_fifty_kwh_with_a_tiny_power_term_pay_the_minimum_of_one_euro_per_mwh_and_vat_on_the_difference():
    tax, vat = iee(), rule("iva", "0.21", compound=True, kinds=ALL)
    # Energy 50 kWh x 0.01 = 0.50 EUR, power 0.30 EUR: base 0.80 EUR.
    # Hour by hour the tax was 0.80 x 0.0511269632 = 0.040901570560 EUR, below 50 / 1000 x 1 = 0.05 EUR.
    parts = [part(tax, "0.80", "50"), part(vat, "0.80", "0", vat_of=Decimal("0.04090157056"))]

    [true_up] = minimum_true_ups(parts)

    assert true_up.rule == tax and true_up.kwh == Decimal("50")
    assert true_up.charged == Decimal("0.040901570560") and true_up.due == Decimal("0.05")
    # 0.05 - 0.04090157056 = 0.00909842944; VAT 21% of it: 0.0019106701824.
    assert true_up.amount == Decimal("0.00909842944")
    assert true_up.compound == vat and true_up.compound_amount == Decimal("0.0019106701824")


def test_a_month_above_the_minimum_needs_no_true_up():
    # 500 kWh at 0.15 = 75 EUR: the tax 75 x 0.0511269632 = 3.83452224 is above 500 / 1000 x 1 = 0.50.
    assert minimum_true_ups([part(iee(), "75", "500")]) == []


def test_industrial_uses_have_a_minimum_of_half_a_euro_per_mwh():
    # 50 kWh, base 0.40: the tax 0.40 x 0.0511269632 = 0.02045078528 is below 50 / 1000 x 0.5 = 0.025.
    [true_up] = minimum_true_ups([part(iee("0.5"), "0.40", "50")])
    assert true_up.amount == Decimal("0.00454921472")  # 0.025 - 0.02045078528
    assert true_up.compound is None and true_up.compound_amount == 0


def test_a_month_without_consumption_gives_back_the_tax_its_power_term_paid_and_the_vat_on_it():
    tax, vat = iee(), rule("iva", "0.21", compound=True, kinds=ALL)
    # 31 days of 4.6 kW: power 10.793115 EUR, taxed hour by hour 10.793115 x 0.0511269632 = 0.551819193418368.
    parts = [part(tax, "10.793115", "0"), part(vat, "10.793115", "0", vat_of=Decimal("0.551819193418368"))]

    [true_up] = minimum_true_ups(parts)

    assert true_up.due == 0 and true_up.amount == Decimal("-0.551819193418368")
    # 21% of it: -0.11588203061785728
    assert true_up.compound_amount == Decimal("-0.11588203061785728")


def test_a_rate_and_minimum_changing_inside_the_month_is_one_tax_each_rule_minimum_on_its_own_days():
    # A temporary cut to 0.5% with a minimum of 0.5 EUR/MWh until 15 October, then 5.11269632% with 1 EUR/MWh:
    # 25 kWh and 0.40 EUR of base each side.
    cut = rule(
        "iee", "0.005", kinds=["energy", "power"], minimum_eur_per_mwh=Decimal("0.5"), valid_to=date(2026, 10, 15)
    )
    full = iee(valid_from=date(2026, 10, 16))
    # Charged: 0.40 x 0.005 = 0.002 and 0.40 x 0.0511269632 = 0.02045078528, together 0.02245078528.
    # Each rule's minimum over its own days' kWh: 25 / 1000 x 0.5 = 0.0125 and 25 / 1000 x 1 = 0.025, together
    # 0.0375; true-up 0.0375 - 0.02245078528 = 0.01504921472.
    [true_up] = minimum_true_ups([part(cut, "0.40", "25"), part(full, "0.40", "25")])
    assert true_up.rule == full and true_up.due == Decimal("0.0375")
    assert true_up.amount == Decimal("0.01504921472")


def test_a_minimum_starting_inside_the_month_counts_only_the_kwh_of_its_days():
    # No minimum until 15 October, 1 EUR/MWh from the 16th: 40 kWh before (base 0.40), 10 kWh after (base 0.10).
    before = iee(minimum=None, valid_to=date(2026, 10, 15))
    after = iee(valid_from=date(2026, 10, 16))
    # Charged: 0.50 x 0.0511269632 = 0.0255634816; the minimum 10 / 1000 x 1 = 0.01 is below it: no true-up.
    assert minimum_true_ups([part(before, "0.40", "40"), part(after, "0.10", "10")]) == []


def test_a_tax_without_a_minimum_has_no_true_up_even_without_consumption():
    assert minimum_true_ups([part(iee(minimum=None), "10.793115", "0")]) == []


def test_a_minimum_on_a_compound_tax_or_below_zero_is_refused():
    made = TaxRule(
        tax="iva",
        name="IVA",
        rate=Decimal("0.21"),
        kinds=["energy"],
        compound=True,
        valid_from=date(2030, 1, 1),
        minimum_eur_per_mwh=Decimal("1"),
    )
    with pytest.raises(ValidationError, match="minimum per MWh"):
        made.full_clean()
