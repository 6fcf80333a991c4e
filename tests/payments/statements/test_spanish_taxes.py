"""The Spanish taxes on a 2.0TD household's statement, rule by rule, with figures worked by hand:
the electricity tax on energy + power (not meter rental), VAT on top of it, a reduced VAT rate
limited to contracted power up to 10 kW, and a rate changing inside the month (proration by days)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

import pytest

from meters.admin import TaxRuleForm
from meters.contracts import first_hour_of, set_contracted_power, start_contract
from meters.demo import IEE_KINDS, VAT_KINDS
from meters.models import HourlyUsage, Household, Meter, Region, TaxRule
from meters.pricing import TaxSchedule
from meters.standing import accrue_standing_charges
from meters.taxes import overlapping
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.meters.taxkit import IEE, hourly_readings, mark, rule
from tests.meters.test_periods_tariffs import two_td
from tests.payments.statements import kit

MADRID = "Europe/Madrid"
UP_TO_10_KW = {"max_contracted_kw": Decimal("10")}
REDUCED = Decimal("0.10")


def spanish_rules(**reduced) -> None:
    """The electricity tax on energy and power; VAT 21% on top of it, on energy, power and rental;
    with ``reduced``, VAT 10% on the same lines for households up to 10 kW."""
    rule("iee", IEE, kinds=IEE_KINDS, name="Impuesto especial sobre la electricidad")
    rule("iva", "0.21", compound=True, kinds=VAT_KINDS, name="IVA 21%")
    if reduced:
        rule("iva", REDUCED, compound=True, kinds=VAT_KINDS, name="IVA 10%", **reduced)


def october_household(make_household, kw: dict[str, str], tariff=None) -> Household:
    household = make_household(tariff=tariff or two_td())
    Household.objects.filter(pk=household.pk).update(created_at=kit.LONG_AGO, region=Region.PENINSULA)
    mark(kit.OCTOBER_START)
    start_contract(household.pk, kit.OCTOBER_START)
    set_contracted_power(household.pk, kw, kit.OCTOBER_START, now=kit.OCTOBER_START)
    return household


def october_statement(household: Household) -> tuple[Statement, dict[str, object]]:
    accrue_standing_charges(kit.OCTOBER_END)
    assert issue_households([household.pk], kit.OCTOBER, now=kit.AFTER_OCTOBER)["issued"] == 1
    statement = Statement.objects.get(household=household, month=kit.OCTOBER)
    lines = {line.name or line.kind: line for line in statement.lines.all()}
    # Whatever the rules, the statement is the ledger's to the cent.
    assert statement.total_eur == kit.total_of(kit.ledger_sums(household, kit.OCTOBER_START, kit.OCTOBER_END))
    return statement, lines


def test_the_electricity_tax_is_on_energy_and_power_and_vat_on_all_of_it_but_rental_pays_vat_only(
    make_household, make_meter
):
    spanish_rules()
    household = october_household(make_household, {"P1": "4.6", "P2": "4.6"})
    meter, _ = make_meter(household)
    Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.026630"), is_active=True)

    statement, lines = october_statement(household)

    # Power: 31 days x (4.6 x 0.073777 + 4.6 x 0.001911 = 0.348165) = 10.793115. Rental: 31 x 0.026630 = 0.825530.
    assert lines["power"].exact_eur == Decimal("10.793115")
    assert lines["rental"].exact_eur == Decimal("0.825530")
    iee = lines["Impuesto especial sobre la electricidad"]
    # Its base is the power term alone (no rental): 10.793115 x 0.0511269632 = 0.551819193418368.
    assert iee.base_eur == Decimal("10.79") and iee.amount_eur == Decimal("0.55")
    vat = lines["IVA 21%"]
    # VAT's base: power 10.793115 + its electricity tax 0.551819193418368 + rental 0.825530 = 12.170464193418368;
    # 21% of it = 2.55579748061785728.
    assert vat.base_eur == Decimal("12.17") and vat.amount_eur == Decimal("2.56")
    rental = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.RENTAL)
    assert {line.tax_rate for line in rental} == {Decimal("0.21")}  # VAT alone, no electricity tax
    # 10.79 + 0.83 + 0.55 + 2.56 = 14.73
    assert statement.total_eur == Decimal("14.73")


def test_reduced_vat_applies_up_to_10_kw_and_full_vat_from_the_hour_contracted_power_exceeds_it(make_household):
    spanish_rules(**UP_TO_10_KW)
    household = october_household(make_household, {"P1": "4.6", "P2": "4.6"})
    # From 16 October: 12 kW in P2 (the highest period counts), P1 stays below 10 kW.
    set_contracted_power(
        household.pk, {"P1": "9.5", "P2": "12"}, first_hour_of(date(2026, 10, 16), MADRID), now=kit.OCTOBER_START
    )

    statement, lines = october_statement(household)

    # Power: 15 days x 0.348165 = 5.222475, then 16 days (25 October has 25 hours: one day) x
    # (9.5 x 0.073777 + 12 x 0.001911 = 0.7008815 + 0.022932 = 0.7238135, 0.723814 to the micro-euro)
    # = 11.581024. Together 16.803499.
    assert lines["power"].exact_eur == Decimal("16.803499")
    # Electricity tax on all of it: 16.803499 x 0.0511269632 = 0.8591118...: 0.86.
    assert lines["Impuesto especial sobre la electricidad"].amount_eur == Decimal("0.86")
    reduced, full = lines["IVA 10%"], lines["IVA 21%"]
    # VAT 10% on the first 15 days: (5.222475 + 5.222475 x 0.0511269632 = 5.48948428713792) x 0.10 = 0.5489484...
    assert reduced.tax_rate == REDUCED and reduced.base_eur == Decimal("5.49") and reduced.amount_eur == Decimal("0.55")
    # VAT 21% on the last 16: (11.581024 + 0.592103...= 12.173127...) x 0.21 = 2.5563567...
    assert full.base_eur == Decimal("12.17") and full.amount_eur == Decimal("2.56")
    # 16.80 + 0.86 + 0.55 + 2.56 = 20.77
    assert statement.total_eur == Decimal("20.77")


def test_the_power_limit_is_inclusive_and_a_household_without_contracted_power_pays_full_vat(make_household):
    spanish_rules(**UP_TO_10_KW)
    taxes = TaxSchedule(two_td(), Region.PENINSULA)
    day = date(2026, 10, 5)

    def vat(max_kw):
        return [rule.name for rule in taxes.rules("power", day, max_kw) if rule.tax == "iva"]

    assert vat(Decimal("10")) == ["IVA 10%"]
    assert vat(Decimal("10.001")) == ["IVA 21%"]
    assert vat(None) == ["IVA 21%"]
    # IEE + 10% x (1 + IEE) = 0.0511269632 + 0.10511269632 = 0.15623965952
    assert taxes.rate("power", day, Decimal("4.6")) == Decimal("0.15623965952")
    # IEE + 21% x (1 + IEE) = 0.0511269632 + 0.220736662272 = 0.271863625472
    assert taxes.rate("power", day, Decimal("15")) == Decimal("0.271863625472")


def test_a_second_rule_of_one_tax_with_the_same_power_limit_is_refused_but_another_limit_is_not(db):
    spanish_rules(**UP_TO_10_KW)
    same = TaxRule(
        tax="iva",
        name="IVA 5%",
        rate=Decimal("0.05"),
        kinds=["power"],
        compound=True,
        region=Region.PENINSULA,
        valid_from=date(2030, 1, 1),
        max_contracted_kw=Decimal("10"),
    )
    assert [rule.name for rule in overlapping(same, set())] == ["IVA 10%"]
    same.max_contracted_kw = Decimal("3")
    assert overlapping(same, set()) == []

    form = TaxRuleForm(
        data={
            "tax": "iva",
            "name": "IVA 5%",
            "rate": "0.05",
            "kinds": ["power"],
            "compound": "on",
            "region": Region.PENINSULA,
            "max_contracted_kw": "10",
            "valid_from": "2030-01-01",
        }
    )
    assert not form.is_valid() and "IVA 10%" in str(form.errors)
    assert TaxRule.objects.filter(name="IVA 5%").count() == 0


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_a_power_limit_of_zero_or_less_is_refused(db, limit):
    made = TaxRule(
        tax="iva",
        name="IVA",
        rate=Decimal("0.1"),
        kinds=["power"],
        valid_from=date(2030, 1, 1),
        max_contracted_kw=Decimal(limit),
    )
    with pytest.raises(Exception, match=r"more than 0 kW|greater than or equal"):
        made.full_clean()


def test_a_vat_rate_changing_inside_the_month_is_prorated_by_days(make_household):
    # VAT 21% to 15 October, 10% from 16 October for every household (a temporary cut by decree).
    rule("iee", IEE, kinds=IEE_KINDS, name="Impuesto especial sobre la electricidad")
    rule("iva", "0.21", compound=True, kinds=VAT_KINDS, name="IVA 21%", valid_to=date(2026, 10, 15))
    rule("iva", REDUCED, compound=True, kinds=VAT_KINDS, name="IVA 10%", valid_from=date(2026, 10, 16))
    household = october_household(make_household, {"P1": "4.6", "P2": "4.6"})

    statement, lines = october_statement(household)

    # 15 days x 0.348165 = 5.222475 at 21%: (5.222475 + 0.267009287137920) x 0.21 = 1.1527917...: 1.15.
    assert lines["IVA 21%"].base_eur == Decimal("5.49") and lines["IVA 21%"].amount_eur == Decimal("1.15")
    # 16 days x 0.348165 = 5.570640 at 10%: (5.570640 + 0.284810...= 5.855450...) x 0.10 = 0.5855450...: 0.59.
    assert lines["IVA 10%"].base_eur == Decimal("5.86") and lines["IVA 10%"].amount_eur == Decimal("0.59")
    # Electricity tax on 10.793115: 0.5518191...: 0.55. Total 10.79 + 0.55 + 1.15 + 0.59 = 13.08.
    assert statement.total_eur == Decimal("13.08")


def test_the_hourly_job_and_ingest_tax_each_household_by_its_own_contracted_power(make_household, make_meter):
    # Two households on one 2.0TD tariff, one hour job: 4.6 kW gets VAT 10%, 15 kW VAT 21%, on
    # every kind of line (power, rental, energy priced at ingest).
    spanish_rules(**UP_TO_10_KW)
    tariff = two_td()
    small = october_household(make_household, {"P1": "4.6", "P2": "4.6"}, tariff)
    large = october_household(make_household, {"P1": "15", "P2": "15"}, tariff)
    for household in (small, large):
        meter, _ = make_meter(household)
        Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.026630"), is_active=True)
    accrue_standing_charges(kit.OCTOBER_START + timedelta(hours=3))
    for household in (small, large):
        hourly_readings(Meter.objects.get(household=household), kit.OCTOBER_START, 2)

    # IEE + 10% x (1 + IEE) = 0.15623965952 on power and energy; 10% alone on rental.
    # IEE + 21% x (1 + IEE) = 0.271863625472 on power and energy; 21% alone on rental.
    expected = {
        small.pk: {"power": "0.15623965952", "energy": "0.15623965952", "rental": "0.1"},
        large.pk: {"power": "0.271863625472", "energy": "0.271863625472", "rental": "0.21"},
    }
    for household_id, rates in expected.items():
        for kind, rate in rates.items():
            found = set(
                HourlyUsage.objects.filter(household_id=household_id, kind=kind).values_list("tax_rate", flat=True)
            )
            assert found == {Decimal(rate)}, (household_id, kind, found)
