"""Closing an account: nothing billed after its closing hour, its last statement shows where the balance went;
and a credit note that leaves money owed to the household credits it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from bsv import PrivateKey
from django.db.models import Sum

from meters.contracts import close_account, start_contract
from meters.models import HourlyUsage, Meter
from meters.standing import accrue_standing_charges
from payments import keys, withdrawals
from payments.broadcast import send_one
from payments.models import PriceQuote, Settlement, Withdrawal
from payments.settlement import settle_household
from payments.statements import corrections
from payments.statements.issuing import due, issue_households
from payments.statements.models import Statement
from payments.statements.rendering import as_json, document_context
from payments.wallets import balance_satoshis, open_wallet
from tests.meters.taxkit import flat, mark
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, NOVEMBER, OCTOBER, OCTOBER_END, OCTOBER_START

CLOSING = datetime(2026, 10, 31, 20, 30, tzinfo=UTC)  # 21:30 in Madrid, the last evening of October
CLOSED_AT = datetime(2026, 10, 31, 21, 0, tzinfo=UTC)  # the next hour no line can exist yet
WITHDRAWN = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)  # the next morning, after the last hours were paid


@pytest.fixture
def home(make_household, make_meter):
    household = make_household("casa@example.com", tariff=kit.tou_tariff())
    meter, _ = make_meter(household)
    kit.contracted_long_ago(household)
    return household, meter


def test_a_contract_accrues_no_standing_charge_from_its_closing_hour(make_household, make_meter):
    household = make_household(tariff=flat("Flat", "0.20", standing="0.48"))  # 0.02 EUR an hour
    meter, _ = make_meter(household)
    start = datetime(2026, 10, 1, 0, 0, tzinfo=UTC)
    mark(start)
    start_contract(household.pk, start)
    closed_at = close_account(household.pk, now=datetime(2026, 10, 3, 9, 30, tzinfo=UTC))
    assert closed_at == datetime(2026, 10, 3, 10, 0, tzinfo=UTC)
    assert close_account(household.pk, now=datetime(2026, 10, 9, tzinfo=UTC)) == closed_at  # closing again: no change

    accrue_standing_charges(datetime(2026, 10, 6, 0, 30, tzinfo=UTC))

    standing = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.STANDING)
    assert standing.count() == (closed_at - start) // timedelta(hours=1) == 58
    assert standing.order_by("-hour_start").first().hour_start == closed_at - timedelta(hours=1)
    assert not Meter.objects.get(pk=meter.pk).is_active  # its token is refused from now on


def test_the_closing_months_statement_is_the_last_and_shows_the_withdrawal(home, ledger):
    household, meter = home
    kit.feed(meter, OCTOBER_START, CLOSING - timedelta(minutes=30))
    with time_machine.travel(CLOSING, tick=False):
        assert close_account(household.pk, now=CLOSING) == CLOSED_AT
    kit.pay_until(household, ledger, CLOSED_AT)  # the last hours are paid by the hourly run as usual
    address = PrivateKey().address(network=keys.address_network())
    with time_machine.travel(WITHDRAWN, tick=False):
        PriceQuote.objects.create(source="fixed", bsv_eur=kit.BSV_EUR, fetched_at=WITHDRAWN)
        household.refresh_from_db()
        shown = withdrawals.preview(household, address, WITHDRAWN)
        withdrawal = withdrawals.withdraw(household, shown.token, acting_user=None, source="household").withdrawal
        assert send_one(Withdrawal, withdrawal.pk, ledger) == "seen"
    wallet = open_wallet(household)
    assert balance_satoshis(wallet) == 0

    assert issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)["issued"] == 1
    statement = Statement.objects.get(household=household, month=OCTOBER)
    (shown_on,) = statement.withdrawals.all()
    assert (shown_on.txid, shown_on.address, shown_on.satoshis, shown_on.fee_satoshis) == (
        withdrawal.txid,
        address,
        shown.satoshis,
        shown.fee_satoshis,
    )
    assert statement.unsettled_eur == 0 and statement.total_eur == kit.total_of(
        kit.ledger_sums(household, OCTOBER_START, OCTOBER_END)
    )
    assert document_context(statement)["withdrawals"] == [shown_on]
    assert as_json(statement)["withdrawals"][0]["satoshis"] == shown.satoshis
    last_hour = HourlyUsage.objects.filter(household=household).order_by("-hour_start").first().hour_start
    assert last_hour < CLOSED_AT

    # No statement after the closing month: none is due (earlier months still are), and asking for one issues none.
    december = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    assert [d.month for d in due(december) if household.pk in d.household_ids and d.month > OCTOBER] == []
    assert issue_households([household.pk], NOVEMBER, now=december)["no_contract"] == 1


def test_a_credit_note_that_leaves_money_owed_to_the_household_credits_its_next_payments(home, ledger):
    household, meter = home
    register = kit.feed(meter, OCTOBER_START, OCTOBER_END)
    kit.pay_until(household, ledger, OCTOBER_END)  # October paid in full
    assert issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)["issued"] == 1
    # A meter correction after the statement: 4 kWh of a paid October hour were never used (EUR 0.52 at 0.13).
    hour = datetime(2026, 10, 10, 3, 0, tzinfo=UTC)
    HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=1,
        kwh=Decimal("-4"),
        tariff_version=household.tariff.versions.get(),
        rate=Decimal("0.13"),
        cost_eur=Decimal("-0.520000"),
        tax_eur=Decimal("0"),
    )
    later = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
    corrections.check(later)
    note = Statement.objects.get(household=household, revision=1)
    assert (note.is_credit, note.total_eur) == (True, Decimal("-0.52"))
    assert note.unsettled_eur == Decimal("-0.52")  # paid 0.52 more than the month now costs: owed to the household

    # The credit counts for the household: the page shows it, and the next payment is that much smaller.
    # November's first hours cost more than the credit; the run pays their cost less the credit.
    november = OCTOBER_END + timedelta(hours=24)
    kit.feed(meter, OCTOBER_END + timedelta(hours=1), november, register=register + Decimal("0.5"))
    november_cost = HourlyUsage.objects.filter(
        household=household, hour_start__gte=OCTOBER_END, hour_start__lt=november, settled_at__isnull=True
    ).aggregate(c=Sum("cost_eur"), t=Sum("tax_eur"))
    november_eur = november_cost["c"] + november_cost["t"]
    assert november_eur > Decimal("0.52")
    with time_machine.travel(november + timedelta(minutes=5), tick=False):
        PriceQuote.objects.create(source="fixed", bsv_eur=kit.BSV_EUR, fetched_at=november + timedelta(minutes=5))
        result = settle_household(household.pk, november, november + timedelta(minutes=5))
    assert Settlement.objects.get(pk=result.settlement_id).eur == november_eur - Decimal("0.52")
    assert not HourlyUsage.objects.filter(household=household, settled_at__isnull=True, cost_eur__isnull=False).exists()
