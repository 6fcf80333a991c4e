"""A statement itemises each tax rule (base, rate, amount), as meters.taxes.breakdown states them, and still
equals the ledger to the cent: settled plus unsettled of its hours (docs/billing.md, "Statements")."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import time_machine

from lib.money import round_cent
from lib.periods import HOUR
from meters.models import HourlyUsage, Household
from meters.taxes import breakdown
from payments.statements.issuing import issue_households
from payments.statements.lines import to_cent
from payments.statements.models import Statement
from tests.meters.test_taxes import october  # noqa: F401 (the fixture: a month of two tariffs and a VAT change)
from tests.payments.statements import kit

OCTOBER = date(2026, 10, 1)
AFTER_OCTOBER = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_each_tax_rule_is_a_line_with_its_own_base_rate_and_amount(october, ledger):  # noqa: F811
    household, lines = october
    kit.pay_until(household, ledger, datetime(2026, 10, 16, 10, 0, tzinfo=UTC))
    statement = _issue(household)

    taxes = [(line.name, line.tax_rate, line.base_eur, line.amount_eur) for line in statement.lines.filter(kind="tax")]
    # The electricity tax on all 143.20 of costs; VAT 21% on days 1-19 and 10% on days 20-31, each on its
    # days' costs plus their electricity tax (tests/meters/test_taxes.py works the figures by hand).
    assert taxes == [
        ("Impuesto especial sobre la electricidad", Decimal("0.051126963200"), Decimal("143.20"), Decimal("7.32")),
        ("IVA 21%", Decimal("0.210000000000"), Decimal("84.72"), Decimal("17.79")),
        ("IVA 10%", Decimal("0.100000000000"), Decimal("65.80"), Decimal("6.58")),
    ]
    assert [(p.name, to_cent(p.base), round_cent(p.amount)) for p in breakdown(lines)] == [
        (name, base, amount) for name, _, base, amount in taxes
    ]
    labels = [(line.label, line.price_text) for line in statement.lines.filter(kind="tax")]
    assert labels[0] == ("Impuesto especial sobre la electricidad", "5.11269632%")
    assert labels[1:] == [("IVA 21%", "21%"), ("IVA 10%", "10%")]

    sums = kit.ledger_sums(household, *_bounds(lines))
    assert sums["settled"] > 0 and sums["unsettled"] > 0
    assert statement.total_eur == kit.total_of(sums) == Decimal("174.89")
    assert statement.settled_eur + statement.unsettled_eur == statement.total_eur
    assert sum(line.amount_eur for line in statement.lines.all()) == statement.total_eur
    assert statement.tax_eur == Decimal("31.69")


def test_lines_taxed_without_rules_keep_one_line_at_their_combined_rate(october, ledger):  # noqa: F811
    """A factor no rule explains (set by hand) is not itemised by guess: one line at that rate, still to the cent."""
    household, lines = october
    first = lines[0]
    HourlyUsage.objects.filter(pk=first.pk).update(tax_rate=Decimal("0.5"), tax_eur=first.cost_eur / 2)
    statement = _issue(household)

    by_key = {line.key: line for line in statement.lines.filter(kind="tax")}
    assert by_key["tax:0.5"].base_eur == to_cent(first.cost_eur)
    assert len(by_key) == 4
    assert statement.total_eur == kit.total_of(kit.ledger_sums(household, *_bounds(lines)))


def _bounds(lines):
    return kit.OCTOBER_START, kit.OCTOBER_END


def _issue(household) -> Statement:
    Household.objects.filter(pk=household.pk).update(created_at=kit.LONG_AGO)  # a customer before October
    assert issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)["issued"] == 1
    return Statement.objects.get(household=household, month=OCTOBER)


def test_a_month_with_a_dst_change_a_tariff_switch_a_vat_change_and_a_silent_week_equals_the_ledger(
    make_household, make_meter, ledger
):
    """Issue 14's "Done when" in one month: October 2026 in Madrid (the 25-hour day), tariff A then B from the
    15th, VAT 21% then 10% from the 20th, and no reading at all from the 5th to the 11th: the standing charge
    accrues through the silent week (the hourly job), half the month is paid, and the statement is the ledger
    to the cent, each tax on its own line."""
    from meters.contracts import assign_tariff, first_hour_of, start_contract
    from meters.standing import accrue_standing_charges
    from tests.meters.taxkit import IEE, VAT, flat, hourly_readings, mark, rule

    tariff_a, tariff_b = flat("A", "0.15", standing="0.30"), flat("B", "0.20", standing="0.40")
    rule("iee", IEE, name="Impuesto especial sobre la electricidad")
    rule("iva", VAT, compound=True, valid_to=date(2026, 10, 19), name="IVA 21%")
    rule("iva", "0.10", compound=True, valid_from=date(2026, 10, 20), name="IVA 10%")
    household = make_household(tariff=tariff_a)
    meter, _ = make_meter(household)
    start, end = kit.OCTOBER_START, kit.OCTOBER_END
    mark(start)
    start_contract(household.pk, start)
    assign_tariff(household.pk, tariff_b, first_hour_of(date(2026, 10, 15), "Europe/Madrid"), now=start)
    silent_from = first_hour_of(date(2026, 10, 5), "Europe/Madrid")
    heard_again = first_hour_of(date(2026, 10, 12), "Europe/Madrid")
    before = (silent_from - start) // HOUR
    with time_machine.travel(end, tick=False):
        hourly_readings(meter, start, before)
        # The register did not move while the meter was silent: the week used nothing but its standing charge.
        hourly_readings(meter, heard_again, (end - heard_again) // HOUR, first=str(1000 + before))
    accrue_standing_charges(end + timedelta(minutes=30))  # beat's job, every hour, caught up
    kit.pay_until(Household.objects.get(pk=household.pk), ledger, datetime(2026, 10, 18, 10, 0, tzinfo=UTC))
    statement = _issue(household)

    lines = HourlyUsage.objects.filter(household=household, hour_start__gte=start, hour_start__lt=end)
    assert lines.filter(kind="standing").count() == 745  # every hour of the contract, the silent week's too
    assert not lines.filter(kind="energy", hour_start__gte=silent_from, hour_start__lt=heard_again, kwh__gt=0).exists()
    standing = {line.unit_price: line.quantity for line in statement.lines.filter(kind="standing")}
    assert standing == {Decimal("0.300000"): Decimal("14"), Decimal("0.400000"): Decimal("17")}
    assert [line.name for line in statement.lines.filter(kind="tax")] == [
        "Impuesto especial sobre la electricidad",
        "IVA 21%",
        "IVA 10%",
    ]
    sums = kit.ledger_sums(household, start, end)
    assert sums["settled"] > 0 and sums["unsettled"] > 0
    assert statement.total_eur == kit.total_of(sums)
    assert statement.settled_eur + statement.unsettled_eur == statement.total_eur
    assert sum(line.amount_eur for line in statement.lines.all()) == statement.total_eur
