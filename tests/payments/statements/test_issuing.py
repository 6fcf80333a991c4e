"""Issuing a month's statement: it equals the ledger to the cent, is numbered without gaps, issued once, final."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import DatabaseError, connection, transaction
from django.db.models import Sum

from meters.models import HourlyUsage
from payments.statements import issuing
from payments.statements.issuing import MonthNotClosed, issue_chunk, issue_households
from payments.statements.lines import to_cent
from payments.statements.models import (
    DocumentIsFinal,
    Series,
    SeriesCounter,
    Statement,
    StatementDelivery,
    StatementLine,
)
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_END, OCTOBER_START


@pytest.fixture
def home(make_household, make_meter):
    household = make_household("casa@example.com", tariff=kit.tou_tariff())
    meter, _ = make_meter(household)
    kit.contracted_long_ago(household)
    return household, meter


@pytest.fixture
def october(home, ledger):
    """A whole October of hourly use, the first half paid through settlement, the rest unpaid."""
    household, meter = home
    kit.feed(meter, OCTOBER_START, OCTOBER_END)
    settlement = kit.pay_until(household, ledger, datetime(2026, 10, 16, 10, 0, tzinfo=UTC))
    return household, settlement


def issue(household, month=OCTOBER, now=AFTER_OCTOBER) -> Statement:
    tally = issue_households([household.pk], month, now=now)
    assert tally["issued"] == 1, tally
    return Statement.objects.get(household=household, month=month, revision=0)


def test_the_total_is_the_settled_plus_unsettled_ledger_to_the_cent_over_a_month_with_a_25_hour_day(october):
    household, _ = october
    statement = issue(household)

    sums = kit.ledger_sums(household, OCTOBER_START, OCTOBER_END)
    assert sums["hours"] == 745  # one standing-charge line per hour: October has a 25-hour day in Madrid
    assert sums["settled"] > 0 and sums["unsettled"] > 0
    assert statement.total_eur == kit.total_of(sums)
    assert statement.settled_eur + statement.unsettled_eur == statement.total_eur
    assert statement.settled_eur == to_cent(sums["settled"])
    lines = list(statement.lines.all())
    assert sum(line.amount_eur for line in lines) == statement.total_eur
    assert (
        statement.net_eur + statement.tax_eur + sum(line.amount_eur for line in lines if line.kind == "rounding")
        == statement.total_eur
    )
    assert statement.energy_kwh == sums["kwh"]
    assert statement.ledger_cost_eur + statement.ledger_tax_eur == sums["settled"] + sums["unsettled"]


def test_energy_is_itemised_per_rate_and_the_standing_charge_as_days_times_the_daily_charge(october):
    household, _ = october
    statement = issue(household)

    energy = {line.unit_price: line for line in statement.lines.filter(kind="energy")}
    assert set(energy) == {Decimal("0.13"), Decimal("0.2"), Decimal("0.32")}
    for rate, line in energy.items():
        hours = HourlyUsage.objects.filter(
            household=household, kind="energy", rate=rate, hour_start__gte=OCTOBER_START, hour_start__lt=OCTOBER_END
        ).aggregate(kwh=Sum("kwh"), eur=Sum("cost_eur"))
        assert (line.quantity, line.exact_eur, line.amount_eur) == (hours["kwh"], hours["eur"], to_cent(hours["eur"]))
    (standing,) = statement.lines.filter(kind="standing")
    assert (standing.quantity, standing.unit_price, standing.amount_eur) == (31, kit.STANDING, Decimal("10.85"))
    assert standing.quantity_text == "31 days"
    assert standing.price_text == "€0.3500/day"


def test_what_was_settled_lists_the_payments_with_their_satoshis_and_the_balance_at_month_end(october, ledger):
    household, settlement = october
    statement = issue(household)

    (payment,) = statement.payments.all()
    assert (payment.settlement_id, payment.txid) == (settlement.pk, settlement.txid)
    assert (payment.eur, payment.satoshis) == (settlement.eur, settlement.satoshis)  # wholly in October
    assert (statement.settlement_count, statement.settled_satoshis) == (1, settlement.satoshis)
    # The wallet after that one payment: the deposit less what it paid and its fee, at October's end.
    assert statement.balance_at == OCTOBER_END
    assert statement.balance_satoshis == kit.FUNDS - settlement.satoshis - settlement.fee_satoshis
    assert statement.balance_bsv_eur == kit.BSV_EUR
    assert statement.balance_eur == to_cent(Decimal(statement.balance_satoshis) * kit.BSV_EUR / 100_000_000)


def test_a_payment_across_the_months_edge_gives_each_month_its_share_of_the_satoshis(home, ledger):
    household, meter = home
    kit.feed(meter, datetime(2026, 9, 30, 12, 0, tzinfo=UTC), datetime(2026, 10, 1, 6, 0, tzinfo=UTC))
    settlement = kit.pay_until(household, ledger, datetime(2026, 10, 1, 6, 0, tzinfo=UTC))
    statement = issue(household)

    (payment,) = statement.payments.all()
    october_eur = HourlyUsage.objects.filter(
        household=household, hour_start__gte=OCTOBER_START, hour_start__lt=OCTOBER_END
    ).aggregate(s=Sum("cost_eur"))["s"]
    assert payment.eur == october_eur < settlement.eur
    share = Decimal(settlement.satoshis) * october_eur / settlement.eur
    assert abs(payment.satoshis - share) <= Decimal("0.5")


def test_a_refused_payment_is_not_listed_and_the_one_that_paid_its_hours_later_is(home, ledger):
    household, meter = home
    kit.feed(meter, OCTOBER_START, OCTOBER_START + timedelta(hours=30))
    refused = kit.pay_until(household, ledger, OCTOBER_START + timedelta(hours=20))
    with time_machine.travel(OCTOBER_START + timedelta(hours=21), tick=False):
        assert refused.fail("rejected", "bad-txns-inputs-missingorspent", ledger) == "rejected"
    later = kit.pay_until(household, ledger, OCTOBER_START + timedelta(hours=30))
    statement = issue(household)

    assert list(statement.payments.values_list("settlement_id", flat=True)) == [later.pk]
    assert statement.settled_eur == to_cent(later.eur) and statement.unsettled_eur == 0


def test_numbers_run_on_without_gaps_in_the_series_and_year(make_household, home):
    household, _ = home
    others = [make_household() for _ in range(3)]
    kit.contracted_long_ago(*others)
    issue_households([household.pk, *(h.pk for h in others)], OCTOBER, now=AFTER_OCTOBER)

    codes = list(Statement.objects.order_by("number").values_list("code", flat=True))
    assert codes == ["EP-2026-000001", "EP-2026-000002", "EP-2026-000003", "EP-2026-000004"]
    assert SeriesCounter.objects.get(series__code="EP", year=2026).last_number == 4


def test_the_numbering_year_is_the_issue_dates_in_the_issuers_zone(home):
    household, _ = home
    # 31 December 23:30 UTC is already 1 January in Madrid: December's statement is the first of 2027.
    statement = issue(household, month=datetime(2026, 12, 1).date(), now=datetime(2026, 12, 31, 23, 30, tzinfo=UTC))
    assert (statement.code, str(statement.issue_date)) == ("EP-2027-000001", "2027-01-01")


def test_issuing_twice_issues_nothing_the_second_time(october):
    household, _ = october
    issue(household)
    again = issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER + timedelta(hours=1))
    assert (again["issued"], again["already_issued"]) == (0, 1)
    assert Statement.objects.filter(household=household).count() == 1
    assert SeriesCounter.objects.get(series__code="EP").last_number == 1
    assert issue_chunk([household.pk], OCTOBER, now=AFTER_OCTOBER) == []


def test_a_month_not_over_in_the_households_zone_is_not_issued(home):
    household, _ = home
    # 31 October 23:30 UTC is already November in Madrid, but a household in New York is still in October.
    household.timezone = "America/New_York"
    household.save()
    tally = issue_households([household.pk], OCTOBER, now=datetime(2026, 10, 31, 23, 30, tzinfo=UTC))
    assert tally["not_closed"] == 1 and not Statement.objects.exists()
    with pytest.raises(MonthNotClosed):
        issue_chunk([household.pk], OCTOBER, now=datetime(2026, 10, 31, 23, 30, tzinfo=UTC))


def test_a_household_created_after_the_month_gets_no_statement_for_it(make_household):
    household = make_household()
    household.__class__.objects.filter(pk=household.pk).update(created_at=datetime(2026, 11, 5, tzinfo=UTC))
    tally = issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER + timedelta(days=5))
    assert tally["no_contract"] == 1 and not Statement.objects.exists()


def test_a_month_of_flat_readings_gets_a_statement_of_its_standing_charge(home):
    household, meter = home
    kit.feed(meter, OCTOBER_START, OCTOBER_END, kwh=lambda index: Decimal("0"))
    statement = issue(household)

    assert list(statement.lines.values_list("kind", flat=True)) == ["standing"]
    assert statement.energy_kwh == 0
    assert statement.total_eur == Decimal("10.85") == 31 * Decimal("0.35")
    assert statement.unsettled_eur == Decimal("10.85")


def test_a_silent_household_still_gets_its_statement(home):
    household, _ = home
    statement = issue(household)
    assert (statement.total_eur, statement.lines.count(), statement.settlement_count) == (0, 0, 0)
    assert statement.balance_satoshis == 0


def test_a_rounding_line_reconciles_lines_rounded_one_by_one_with_the_total_rounded_once(home):
    household, meter = home
    # Two rates, each line 0.004 EUR: rounded one by one they say 0.00 + 0.00, the month says 0.01.
    version = household.tariff.versions.get()
    for hour, rate in ((OCTOBER_START + timedelta(hours=2), "0.130000"), (OCTOBER_START + timedelta(hours=3), "0.2")):
        HourlyUsage.objects.create(
            household=household,
            meter=meter,
            hour_start=hour,
            kwh=Decimal("0.004") / Decimal(rate),
            tariff_version=version,
            rate=Decimal(rate),
            cost_eur=Decimal("0.004"),
            tax_eur=Decimal("0"),
        )
    statement = issue(household)

    assert [(line.kind, line.amount_eur) for line in statement.lines.all()] == [
        ("energy", Decimal("0.00")),
        ("energy", Decimal("0.00")),
        ("rounding", Decimal("0.01")),
    ]
    assert statement.total_eur == Decimal("0.01") == to_cent(Decimal("0.008"))
    assert statement.net_eur == 0


def test_taxes_on_the_ledger_lines_are_itemised_with_base_rate_and_amount(october):
    household, _ = october
    # What the tax rules will store on every line: here 21% on October's lines, rounded per hour as the ledger does.
    rate = Decimal("0.21")
    for line in HourlyUsage.objects.filter(
        household=household, hour_start__gte=OCTOBER_START, hour_start__lt=OCTOBER_END
    ):
        HourlyUsage.objects.filter(pk=line.pk).update(
            tax_rate=rate, tax_eur=(line.cost_eur * rate).quantize(Decimal("0.000001"))
        )
    statement = issue(household)

    (tax,) = statement.lines.filter(kind="tax")
    sums = HourlyUsage.objects.filter(
        household=household, hour_start__gte=OCTOBER_START, hour_start__lt=OCTOBER_END
    ).aggregate(cost=Sum("cost_eur"), tax=Sum("tax_eur"))
    assert (tax.tax_rate, tax.base_eur, tax.amount_eur) == (rate, to_cent(sums["cost"]), to_cent(sums["tax"]))
    assert tax.label == "Tax at 21%" and tax.price_text == "21%"
    assert statement.tax_eur == tax.amount_eur
    assert statement.total_eur == kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END))


def test_the_household_and_the_issuer_are_snapshotted(october, settings):
    household, _ = october
    settings.STATEMENT_ISSUER_NAME = "Eléctrica Ejemplo S.L."
    name = household.name
    statement = issue(household)
    household.name, household.address = "Renamed", "Elsewhere"
    household.save()

    statement.refresh_from_db()
    assert (statement.customer["name"], statement.customer["email"]) == (name, "casa@example.com")
    assert statement.issuer["name"] == "Eléctrica Ejemplo S.L."
    assert (statement.timezone, statement.period_start, statement.period_end) == (
        "Europe/Madrid",
        OCTOBER_START,
        OCTOBER_END,
    )


def test_an_issued_statement_is_final(october):
    household, _ = october
    statement = issue(household)
    line = statement.lines.first()

    for change in (
        statement.save,
        statement.delete,
        line.save,
        line.delete,
        lambda: Statement.objects.filter(pk=statement.pk).update(total_eur=0),
        lambda: Statement.objects.filter(pk=statement.pk).delete(),
        lambda: StatementLine.objects.filter(statement=statement).update(amount_eur=0),
        lambda: statement.payments.all().delete(),
    ):
        with pytest.raises(DocumentIsFinal):
            change()
    statement.refresh_from_db()
    assert statement.lines.count() == line.statement.lines.count() > 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_the_database_refuses_a_raw_update_or_delete_of_a_statement(october):
    household, _ = october
    statement = issue(household)
    for sql in (
        "UPDATE statements_statement SET total_eur = 0 WHERE id = %s",
        "DELETE FROM statements_statementline WHERE statement_id = %s",
    ):
        with pytest.raises(DatabaseError, match="never changed"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [statement.pk])
    statement.refresh_from_db()
    assert statement.total_eur > 0


def test_a_mail_is_queued_in_the_issuing_transaction(october):
    household, _ = october
    statement = issue(household)
    (delivery,) = StatementDelivery.objects.filter(statement=statement)
    assert (delivery.to, delivery.reason, delivery.state) == ("casa@example.com", "issued", "pending")


issued_calls: list = []


def record_issued(statements) -> None:
    issued_calls.append(([s.code for s in statements], connection.in_atomic_block, Statement.objects.count()))


def refuse_issued(statements) -> None:
    raise RuntimeError("the tax authority's record could not be written")


def test_the_issued_hook_runs_inside_the_issuing_transaction(october, settings):
    household, _ = october
    settings.STATEMENT_ISSUED_HOOK = "tests.payments.statements.test_issuing.record_issued"
    issued_calls.clear()
    issue(household)
    assert issued_calls == [(["EP-2026-000001"], True, 1)]


def test_a_hook_that_raises_rolls_the_statements_and_their_numbers_back(october, settings):
    household, _ = october
    settings.STATEMENT_ISSUED_HOOK = "tests.payments.statements.test_issuing.refuse_issued"
    with pytest.raises(RuntimeError):
        issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)
    assert not Statement.objects.exists()
    assert SeriesCounter.objects.filter(series__code="EP", last_number__gt=0).count() == 0

    settings.STATEMENT_ISSUED_HOOK = ""
    assert issue(household).code == "EP-2026-000001"  # the number was never used


def test_due_finds_each_households_closed_months_by_its_own_clock(home, make_household, settings):
    household, _ = home
    new_york = make_household(timezone="America/New_York")
    kit.contracted_long_ago(new_york)
    settings.STATEMENT_RECENT_MONTHS = 1
    # 1 November 05:30 UTC: Madrid's October ended 6.5 hours ago; New York's 1.5 hours ago (not yet due).
    found = issuing.due(datetime(2026, 11, 1, 5, 30, tzinfo=UTC))
    assert [(d.month, d.tz, d.household_ids) for d in found] == [
        (datetime(2026, 9, 1).date(), "America/New_York", [new_york.pk]),
        (OCTOBER, "Europe/Madrid", [household.pk]),
    ]
    later = issuing.due(datetime(2026, 11, 1, 10, 30, tzinfo=UTC))
    assert {(d.month, d.tz) for d in later} == {(OCTOBER, "America/New_York"), (OCTOBER, "Europe/Madrid")}


def test_issue_due_issues_every_missing_recent_month_once(home, settings):
    settings.STATEMENT_RECENT_MONTHS = 2
    assert issuing.issue_due(AFTER_OCTOBER)["issued"] == 2  # September and October
    assert issuing.issue_due(AFTER_OCTOBER)["issued"] == 0
    assert set(Statement.objects.values_list("month", flat=True)) == {datetime(2026, 9, 1).date(), OCTOBER}


def test_only_the_active_series_numbers(home):
    household, _ = home
    Series.objects.filter(code="EP").update(active=False)
    Series.objects.create(code="EPX", purpose="statement", name="New series")
    assert issue(household).code == "EPX-2026-000001"
