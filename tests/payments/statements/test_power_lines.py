"""A 2.0TD household's statement lists the power term and the meter rental as lines of their own,
and its total is still the ledger's to the cent."""

from __future__ import annotations

from decimal import Decimal

from meters.contracts import set_contracted_power, start_contract
from meters.models import Household, Meter
from meters.standing import accrue_standing_charges
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.meters.taxkit import mark
from tests.meters.test_periods_tariffs import two_td
from tests.payments.statements import kit


def test_the_power_term_and_the_meter_rental_are_lines_of_the_statement(make_household, make_meter):
    household = make_household(tariff=two_td())
    Household.objects.filter(pk=household.pk).update(created_at=kit.LONG_AGO)
    mark(kit.OCTOBER_START)
    start_contract(household.pk, kit.OCTOBER_START)
    set_contracted_power(household.pk, {"P1": "4.6", "P2": "4.6"}, kit.OCTOBER_START, now=kit.OCTOBER_START)
    meter, _ = make_meter(household)
    Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.026630"), is_active=True)
    accrue_standing_charges(kit.OCTOBER_END)

    assert issue_households([household.pk], kit.OCTOBER, now=kit.AFTER_OCTOBER)["issued"] == 1
    statement = Statement.objects.get(household=household, month=kit.OCTOBER)
    lines = {line.kind: line for line in statement.lines.all()}
    # 31 days (the 25-hour day is one day) x (4.6 x 0.073777 + 4.6 x 0.001911 = 0.348165 a day) = 10.793115
    assert lines["power"].exact_eur == Decimal("10.793115") and lines["power"].amount_eur == Decimal("10.79")
    assert lines["power"].label == "Power term"
    # 31 days x 0.026630 = 0.825530
    assert lines["rental"].exact_eur == Decimal("0.825530") and lines["rental"].amount_eur == Decimal("0.83")
    assert "standing" not in lines and "energy" not in lines
    assert statement.total_eur == kit.total_of(kit.ledger_sums(household, kit.OCTOBER_START, kit.OCTOBER_END))
    assert statement.total_eur == Decimal("11.62")
