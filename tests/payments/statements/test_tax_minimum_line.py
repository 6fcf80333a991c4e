"""The electricity tax's minimum charged (issue 18 item 3, Ley 38/1992 art. 99.2; docs/billing.md): a ledger line
of its own for the statement period's last hour, written with the statement, read by it like any line, collected
by the next settlement; a late reading after issue brings a corrective note with the new true-up.

Rules in these tests: the electricity tax 5.11269632% on energy, standing charge and power term with a minimum of
1 EUR/MWh; VAT 21% on all of it and on the electricity tax. Figures worked by hand below.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection

from lib.money import eur_to_satoshis
from meters.contracts import set_contracted_power, start_contract
from meters.demo import IEE_KINDS, VAT_KINDS
from meters.models import HourlyUsage, Household, Region
from meters.standing import accrue_standing_charges
from meters.taxes import breakdown, minimum_true_ups
from payments.models import PriceQuote, Settlement, SettlementLine
from payments.settlement import settle_household
from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.meters.taxkit import IEE, flat, mark, rule
from tests.meters.test_periods_tariffs import two_td
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_END, OCTOBER_START
from tests.threads import at_once

MINIMUM = HourlyUsage.Kind.MINIMUM
FIRST_READING = datetime(2026, 10, 31, 0, 0, tzinfo=UTC)  # 01:00 in Madrid
LAST_READING = datetime(2026, 10, 31, 20, 0, tzinfo=UTC)  # 20 hours of 1 kWh: 20 kWh in October
LAST_HOUR = OCTOBER_END - timedelta(hours=1)  # 31 October 23:00 in Madrid
LATER = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


def taxes() -> None:
    rule("iee", IEE, kinds=IEE_KINDS, name="Impuesto especial sobre la electricidad", minimum_eur_per_mwh=Decimal(1))
    rule("iva", "0.21", compound=True, kinds=VAT_KINDS, name="IVA 21%")


def twenty_kwh(make_household, make_meter, price: str = "0.01") -> tuple[Household, object]:
    """A household on a flat tariff without standing charge that used 20 kWh in October (1 kWh an hour)."""
    taxes()
    household = make_household(tariff=flat(f"Flat {price}", price))
    meter, _ = make_meter(household)
    kit.contracted_long_ago(household)
    register = kit.feed(meter, FIRST_READING, LAST_READING, kwh=lambda index: Decimal(1))
    assert register == Decimal("1020")
    return household, meter


def silent_two_td(make_household) -> Household:
    """A 2.0TD household of 4.6 kW in both power periods with no meter reading at all in October."""
    taxes()
    household = make_household(tariff=two_td())
    Household.objects.filter(pk=household.pk).update(created_at=kit.LONG_AGO, region=Region.PENINSULA)
    # The hourly job stands at the month's end: the contract and its power, started before it, accrue October's
    # power term at once (one household's insert, not 745 runs of the job).
    mark(OCTOBER_END)
    start_contract(household.pk, OCTOBER_START)
    set_contracted_power(household.pk, {"P1": "4.6", "P2": "4.6"}, OCTOBER_START, now=OCTOBER_START)
    assert HourlyUsage.objects.filter(household=household, kind="power").count() == 745
    return household


def issue(household: Household, now: datetime = AFTER_OCTOBER) -> Statement:
    assert issue_households([household.pk], OCTOBER, now=now)["issued"] == 1
    return Statement.objects.get(household=household, month=OCTOBER, revision=0)


def taxes_of(statement: Statement) -> dict[str, tuple[Decimal | None, Decimal]]:
    return {line.name: (line.base_eur, line.amount_eur) for line in statement.lines.filter(kind="tax")}


def month_lines(household: Household) -> list[HourlyUsage]:
    return list(
        HourlyUsage.objects.filter(household=household, hour_start__gte=OCTOBER_START, hour_start__lt=OCTOBER_END)
    )


def minimum_lines(household: Household) -> list[tuple[int, datetime, Decimal, Decimal, Decimal]]:
    return list(
        HourlyUsage.objects.filter(household=household, kind=MINIMUM)
        .order_by("seq")
        .values_list("seq", "hour_start", "cost_eur", "tax_rate", "tax_eur")
    )


def test_twenty_kwh_taxed_below_one_euro_per_mwh_pay_the_minimum_as_a_ledger_line_the_statement_reads(
    make_household, make_meter
):
    household, _ = twenty_kwh(make_household, make_meter)

    statement = issue(household)

    # 20 kWh x 0.01 EUR = 0.20 EUR; hour by hour the tax was 0.20 x 0.0511269632 = 0.01022539264 EUR,
    # below 20 kWh / 1000 x 1 EUR/MWh = 0.02 EUR. True-up 0.02 - 0.01022539264 = 0.00977460736 -> 0.009775
    # (micro-euros, half up); VAT 21% on it 0.00205275 -> 0.002053. One line, for the month's last hour.
    assert minimum_lines(household) == [(0, LAST_HOUR, Decimal("0.009775"), Decimal("0.21"), Decimal("0.002053"))]
    line = HourlyUsage.objects.get(household=household, kind=MINIMUM)
    assert line.kwh == 0 and line.meter_id is None and line.settled_at is None
    # The electricity tax: 0.01022539264 + 0.009775 = 0.02000039264 -> 0.02, on its base of 0.20 (energy).
    # VAT: base 0.20 + 0.02000039264 = 0.22000039264 -> 0.22; 21% of it 0.0462000824544 -> 0.05.
    assert taxes_of(statement) == {
        "Impuesto especial sobre la electricidad": (Decimal("0.20"), Decimal("0.02")),
        "IVA 21%": (Decimal("0.22"), Decimal("0.05")),
    }
    assert (statement.net_eur, statement.tax_eur, statement.total_eur) == (
        Decimal("0.20"),
        Decimal("0.07"),
        Decimal("0.27"),
    )
    # The ledger: 0.20 + 20 x tax_of(0.01, 0.271863625472) = 20 x 0.002719 = 0.05438, + 0.009775 + 0.002053
    # = 0.266208 -> 0.27, the statement's total to the cent (no rounding line needed).
    assert kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END)) == Decimal("0.27")
    assert not statement.lines.filter(kind="rounding").exists()
    assert statement.unsettled_eur == Decimal("0.27")
    # breakdown() of the month's lines adds the true-up to the electricity tax and to VAT's base, and the
    # month needs nothing more.
    parts = {part.name: part for part in breakdown(month_lines(household))}
    assert parts["Impuesto especial sobre la electricidad"].amount == Decimal("0.02000039264")
    assert parts["IVA 21%"].base == Decimal("0.22000039264")
    assert minimum_true_ups(parts.values()) == []


def test_a_month_taxed_above_the_minimum_has_no_true_up(make_household, make_meter):
    household, _ = twenty_kwh(make_household, make_meter, price="0.15")

    statement = issue(household)

    # 20 kWh x 0.15 = 3.00 EUR; the tax 3.00 x 0.0511269632 = 0.153380896 is above 0.02 EUR: nothing to add.
    assert minimum_lines(household) == []
    assert taxes_of(statement)["Impuesto especial sobre la electricidad"] == (Decimal("3.00"), Decimal("0.15"))


def test_a_month_without_consumption_gives_back_the_power_terms_electricity_tax_and_the_vat_on_it(make_household):
    household = silent_two_td(make_household)

    statement = issue(household)

    # Power term: 31 days x (4.6 x 0.073777 + 4.6 x 0.001911) = 10.793115 EUR, taxed hour by hour with the
    # electricity tax, 10.793115 x 0.0511269632 = 0.551819193418368 EUR. No consumption: the tax is not due,
    # so -0.551819193418368 -> -0.551819, and the VAT on it, -0.551819 x 0.21 = -0.11588199 -> -0.115882.
    assert minimum_lines(household) == [(0, LAST_HOUR, Decimal("-0.551819"), Decimal("0.21"), Decimal("-0.115882"))]
    # The electricity tax: 0.551819193418368 - 0.551819 = 0.000000193418368 -> 0.00 on the power term's 10.79;
    # VAT on 10.793115 + 0.000000193418368 -> 10.79: 2.2665541906... -> 2.27.
    assert taxes_of(statement) == {
        "Impuesto especial sobre la electricidad": (Decimal("10.79"), Decimal("0.00")),
        "IVA 21%": (Decimal("10.79"), Decimal("2.27")),
    }
    # What the household pays is the power term and its VAT: 10.793115 x 1.21 = 13.05966915 -> 13.06.
    assert statement.total_eur == Decimal("13.06")
    assert statement.total_eur == kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END))


def test_an_account_closing_inside_the_month_has_its_true_up_on_its_last_billed_hour(make_household, make_meter):
    household, _ = twenty_kwh(make_household, make_meter)
    closing = LAST_READING + timedelta(hours=2)  # 31 October 23:00 in Madrid: nothing is billed from then on
    Household.objects.filter(pk=household.pk).update(closed_at=closing)

    issue(household)

    # The same 20 kWh and figures as above, on the hour before closing rather than the month's last hour.
    assert minimum_lines(household) == [
        (0, closing - timedelta(hours=1), Decimal("0.009775"), Decimal("0.21"), Decimal("0.002053"))
    ]


def settle(household: Household, at: datetime):
    with time_machine.travel(at, tick=False):
        PriceQuote.objects.create(source="fixed", bsv_eur=kit.BSV_EUR, fetched_at=at)
        return settle_household(household.pk, at - timedelta(minutes=5), at)


def test_the_next_settlement_collects_exactly_the_true_up(make_household, make_meter, ledger):
    household, _ = twenty_kwh(make_household, make_meter)
    kit.pay_until(household, ledger, OCTOBER_END)  # October's hours, paid hour by hour before the statement
    statement = issue(household)
    assert statement.settled_eur == Decimal("0.25") and statement.unsettled_eur == Decimal("0.02")

    result = settle(household, AFTER_OCTOBER + timedelta(hours=1, minutes=5))

    assert result.status == "signed"
    settlement = Settlement.objects.get(pk=result.settlement_id)
    true_up = HourlyUsage.objects.get(household=household, kind=MINIMUM)
    # 0.009775 + 0.002053 = 0.011828 EUR, at 30 EUR/BSV: 0.011828 / 30 x 100,000,000 = 39,426.67 -> 39,427 sat.
    assert settlement.eur == Decimal("0.011828")
    assert settlement.satoshis == eur_to_satoshis(Decimal("0.011828"), kit.BSV_EUR) == 39427
    assert list(SettlementLine.objects.filter(settlement=settlement).values_list("usage_id", "eur")) == [
        (true_up.pk, Decimal("0.011828"))
    ]
    assert true_up.settled_at is not None


def test_a_refund_is_netted_with_the_next_hours_and_never_paid_out(make_household, ledger):
    household = silent_two_td(make_household)
    kit.pay_until(household, ledger, OCTOBER_END)
    issue(household)
    refund = HourlyUsage.objects.get(household=household, kind=MINIMUM)
    assert refund.cost_eur + refund.tax_eur == Decimal("-0.667701")  # -0.551819 - 0.115882

    # The next morning's run: 34 hours of November's power term (about 0.018 EUR an hour with its taxes) are
    # less than the refund. Nothing is paid, nothing paid out; every line stays owed (the refund as a credit).
    first = AFTER_OCTOBER + timedelta(minutes=5)
    accrue_standing_charges(AFTER_OCTOBER)
    assert settle(household, first).status == "nothing"
    refund.refresh_from_db()
    assert refund.settled_at is None

    # A day later the hours owe more than the refund: one payment of their amount less the refund.
    later = AFTER_OCTOBER + timedelta(days=1)
    accrue_standing_charges(later)
    november = HourlyUsage.objects.filter(household=household, kind="power", hour_start__gte=OCTOBER_END)
    owed = sum((line.cost_eur + line.tax_eur for line in november), Decimal(0))
    assert owed > Decimal("0.667701")
    result = settle(household, later + timedelta(minutes=5))
    assert result.status == "signed"
    settlement = Settlement.objects.get(pk=result.settlement_id)
    assert settlement.eur == owed - Decimal("0.667701")
    assert SettlementLine.objects.get(settlement=settlement, usage_id=refund.pk).eur == Decimal("-0.667701")
    assert not HourlyUsage.objects.filter(household=household, settled_at__isnull=True).exists()


def refuse_issued(statements) -> None:
    raise RuntimeError("the hook refused the statements")


def test_issuing_twice_or_again_after_a_failed_issue_writes_one_true_up(make_household, make_meter, settings):
    household, _ = twenty_kwh(make_household, make_meter)
    settings.STATEMENT_ISSUED_HOOK = "tests.payments.statements.test_tax_minimum_line.refuse_issued"
    with pytest.raises(RuntimeError):
        issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)
    assert minimum_lines(household) == [] and not Statement.objects.filter(household=household).exists()

    settings.STATEMENT_ISSUED_HOOK = ""
    issue(household)
    assert issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER + timedelta(hours=1))["already_issued"] == 1
    assert corrections.check(LATER)["corrected"] == 0  # nothing changed: no note, no second true-up

    assert [seq for seq, *_ in minimum_lines(household)] == [0]


def test_a_late_reading_after_issue_brings_a_note_with_the_new_true_up(make_household, make_meter):
    household, meter = twenty_kwh(make_household, make_meter)
    statement = issue(household)
    # The meter's reading of 31 October 22:00 in Madrid arrives after the statement: 10 kWh more in October.
    kit.reading(meter, LAST_READING + timedelta(hours=1), Decimal("1030"), LATER)

    assert corrections.check(LATER)["corrected"] == 1

    # 30 kWh: the hours' tax is 0.30 x 0.0511269632 = 0.01533808896, with the true-up already charged
    # 0.02511308896; the minimum 30 / 1000 x 1 = 0.03. A second line of 0.03 - 0.02511308896 = 0.00488691104
    # -> 0.004887, VAT 0.004887 x 0.21 = 0.00102627 -> 0.001026.
    assert minimum_lines(household) == [
        (0, LAST_HOUR, Decimal("0.009775"), Decimal("0.21"), Decimal("0.002053")),
        (1, LAST_HOUR, Decimal("0.004887"), Decimal("0.21"), Decimal("0.001026")),
    ]
    note = Statement.objects.get(household=household, month=OCTOBER, revision=1)
    changes = {line.name or line.kind: (line.base_eur, line.amount_eur) for line in note.lines.all()}
    # The electricity tax now 0.01533808896 + 0.009775 + 0.004887 = 0.03000008896 -> 0.03, was 0.02: +0.01 on a
    # base of 0.30, was 0.20. VAT on 0.30 + 0.03000008896 = 0.33000008896 -> 0.0693000186816 -> 0.07, was 0.05.
    assert changes == {
        "energy": (None, Decimal("0.10")),
        "Impuesto especial sobre la electricidad": (Decimal("0.10"), Decimal("0.01")),
        "IVA 21%": (Decimal("0.11"), Decimal("0.02")),
    }
    assert note.total_eur == Decimal("0.13")
    # The month's documents equal the ledger: 0.266208 + 0.10 + tax_of(0.10, 0.271863625472) = 0.027186
    # + 0.004887 + 0.001026 = 0.399307 -> 0.40 = 0.27 + 0.13.
    assert statement.total_eur + note.total_eur == Decimal("0.40")
    assert kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END)) == Decimal("0.40")
    assert minimum_true_ups(breakdown(month_lines(household))) == []


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_issuers_at_once_write_one_true_up(make_household, make_meter):
    household, _ = twenty_kwh(make_household, make_meter)

    results, errors = at_once(
        lambda: issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER),
        lambda: issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER),
    )

    assert errors == []
    assert sorted(tally["issued"] for tally in results) == [0, 1]
    assert Statement.objects.filter(household=household).count() == 1
    assert [seq for seq, *_ in minimum_lines(household)] == [0]
