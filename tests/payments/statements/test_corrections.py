"""A late reading after the statement: a corrective note with only the difference, never an edit, issued once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from meters.models import HourlyUsage
from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.lines import to_cent
from payments.statements.models import Statement, StatementDelivery
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_END, OCTOBER_START
from tests.threads import at_once

LAST_READING = datetime(2026, 10, 31, 18, 0, tzinfo=UTC)  # 19:00 in Madrid, Saturday: 0.13 EUR/kWh all day
BACK_ON = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # the meter is heard again: 11 hours, 11 kWh in between
LATER = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


@pytest.fixture
def home(make_household, make_meter):
    household = make_household("casa@example.com", tariff=kit.tou_tariff())
    meter, _ = make_meter(household)
    kit.contracted_long_ago(household)
    return household, meter


@pytest.fixture
def silent_at_month_end(home):
    """October's last hours unheard: the 11 kWh between the last reading and the next are spread evenly, so
    October's statement bills 5 of them (18:00-23:00 UTC); its statement is issued."""
    household, meter = home
    register = kit.feed(meter, OCTOBER_START, LAST_READING)
    kit.reading(meter, BACK_ON, register + 11, BACK_ON + timedelta(minutes=1))
    statement = issue(household)
    return household, meter, register, statement


def issue(household) -> Statement:
    assert issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)["issued"] == 1
    return Statement.objects.get(household=household, revision=0)


def documents_total(household) -> Decimal:
    return sum((s.total_eur for s in Statement.objects.filter(household=household, month=OCTOBER)), Decimal(0))


def test_a_late_reading_that_adds_to_the_closed_month_brings_a_debit_note_with_only_the_difference(silent_at_month_end):
    household, meter, register, statement = silent_at_month_end
    # The meter's buffered reading at midnight: 9 of the 11 kWh were used in October, not 5.
    kit.reading(meter, OCTOBER_END, register + 9, LATER)

    tally = corrections.check(LATER)

    assert (tally["changed"], tally["corrected"]) == (1, 1)
    note = Statement.objects.get(household=household, revision=1)
    assert (note.kind, note.code, note.corrects_id, note.month) == (
        "corrective",
        "EPR-2026-000001",
        statement.pk,
        OCTOBER,
    )
    assert note.title == "Debit note" and not note.is_credit
    (energy,) = note.lines.all()
    assert (energy.kind, energy.unit_price, energy.quantity) == ("energy", Decimal("0.13"), Decimal("4"))
    assert note.total_eur == energy.amount_eur == Decimal("0.52")  # 4 kWh at 0.13, and nothing else
    assert (note.period_start, note.period_end) == (statement.period_start, statement.period_end)
    # The statement itself is as it was; the month's documents together equal the ledger now.
    assert Statement.objects.get(pk=statement.pk).total_eur == statement.total_eur
    assert documents_total(household) == kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END))
    assert note.settled_eur + note.unsettled_eur == documents_total(household)
    assert StatementDelivery.objects.filter(statement=note, reason="issued").count() == 1


def test_a_late_reading_that_takes_from_the_closed_month_brings_a_credit_note(silent_at_month_end):
    household, meter, register, statement = silent_at_month_end
    kit.reading(meter, OCTOBER_END, register + 2, LATER)  # 2 kWh in October, not 5

    corrections.check(LATER)

    note = Statement.objects.get(household=household, revision=1)
    assert note.corrects == statement
    assert (note.title, note.is_credit, note.total_eur) == ("Credit note", True, Decimal("-0.39"))
    assert note.lines.get().quantity == Decimal("-3")
    assert documents_total(household) == kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END))


def test_checking_again_issues_nothing_more_and_a_second_change_brings_a_second_note(silent_at_month_end):
    household, meter, register, _ = silent_at_month_end
    kit.reading(meter, OCTOBER_END, register + 9, LATER)
    corrections.check(LATER)
    assert corrections.check(LATER + timedelta(hours=1))["corrected"] == 0

    # One more buffered reading inside the gap moves energy between October's hours at one rate: no money
    # changes, the kWh stay: no note. Then one in September's place would not concern October at all.
    kit.reading(meter, LAST_READING + timedelta(hours=2), register + 2, LATER)
    assert corrections.check(LATER + timedelta(hours=2))["corrected"] == 0
    assert Statement.objects.filter(household=household).count() == 2
    assert documents_total(household) == kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END))


def test_a_true_up_of_settled_hours_is_billed_by_a_note_and_left_to_pay(home, ledger):
    household, meter = home
    # Monday 12 October: no reading between 07:00 and 11:00 local (off-peak 0.13 until 08:00, then 0.20).
    gap_start, gap_end = datetime(2026, 10, 12, 5, 0, tzinfo=UTC), datetime(2026, 10, 12, 9, 0, tzinfo=UTC)
    register = kit.feed(meter, OCTOBER_START, gap_start)
    kit.feed(meter, gap_end, OCTOBER_END, register=register + 8)
    kit.pay_until(household, ledger, datetime(2026, 10, 16, 10, 0, tzinfo=UTC))
    statement = issue(household)
    assert statement.unsettled_eur > 0

    # The meter's buffer: 7 of the 8 kWh were used before 08:00 local, at the cheaper rate.
    kit.reading(meter, gap_start + timedelta(hours=1), register + 7, LATER)
    true_ups = HourlyUsage.objects.filter(household=household, seq__gt=0)
    assert true_ups.exists() and not true_ups.filter(settled_at__isnull=False).exists()
    corrections.check(LATER)

    note = Statement.objects.get(household=household, revision=1)
    assert note.is_credit  # energy moved from 0.20 to 0.13 EUR/kWh
    by_rate = {line.unit_price: line.quantity for line in note.lines.filter(kind="energy")}
    assert by_rate[Decimal("0.13")] > 0 > by_rate[Decimal("0.2")]
    assert sum(by_rate.values()) == 0
    # The note is the month rounded once now less the statement rounded once: the true-up's sum, give or take a cent.
    assert abs(note.total_eur - to_cent(sum((line.cost_eur for line in true_ups), Decimal(0)))) <= Decimal("0.01")
    assert documents_total(household) == kit.total_of(kit.ledger_sums(household, OCTOBER_START, OCTOBER_END))
    # The month's position: what the first half paid stays paid; the true-up is not paid yet.
    assert note.settled_eur == statement.settled_eur


def test_a_month_without_a_statement_is_not_corrected_but_issued(home):
    household, meter = home
    kit.feed(meter, OCTOBER_START, OCTOBER_END)
    assert corrections.correct(household.pk, OCTOBER, now=LATER) is None
    assert corrections.check(LATER)["compared"] == 0
    assert not Statement.objects.exists()


def test_a_month_still_open_is_not_compared(home):
    household, meter = home
    kit.feed(meter, OCTOBER_START, OCTOBER_END)
    issue(household)
    assert corrections.check(OCTOBER_END - timedelta(days=40))["compared"] == 0


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks and concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_correctors_at_once_issue_one_note(make_household, make_meter):
    household = make_household("casa@example.com", tariff=kit.tou_tariff())
    meter, _ = make_meter(household)
    kit.contracted_long_ago(household)
    register = kit.feed(meter, OCTOBER_START, LAST_READING)
    kit.reading(meter, BACK_ON, register + 11, BACK_ON + timedelta(minutes=1))
    issue(household)
    kit.reading(meter, OCTOBER_END, register + 9, LATER)

    results, errors = at_once(*[lambda: corrections.correct(household.pk, OCTOBER, now=LATER)] * 2)

    assert errors == []
    assert sorted(note is None for note in results) == [False, True]
    assert list(Statement.objects.filter(household=household).order_by("revision").values_list("code", flat=True)) == [
        "EP-2026-000001",
        "EPR-2026-000001",
    ]
