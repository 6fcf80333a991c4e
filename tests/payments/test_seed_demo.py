"""seed_demo on the local ledger: funded wallets, settled history, one household in arrears, last month's statements
and a corrective note for the demo login."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Sum

from meters.models import HourlyUsage, Household
from payments.figures import eur
from payments.models import LedgerOutput, Settlement, SettlementLine
from payments.statements.models import Statement
from payments.wallets import balance_satoshis

NOW = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)  # October ended two days ago: its statements are due


@pytest.fixture
def seeded(db):
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    return list(Household.objects.order_by("pk"))


def test_every_demo_household_has_a_wallet_and_all_but_the_last_are_funded(seeded):
    assert all(household.wallet for household in seeded)
    assert [balance_satoshis(h.wallet) > 0 for h in seeded] == [True, True, False]


def test_history_is_settled_hour_by_hour_and_the_unfunded_household_is_in_arrears(seeded):
    paying, unfunded = seeded[:2], seeded[2]
    for household in paying:
        settlements = Settlement.objects.filter(household=household)
        assert settlements.count() >= 48
        assert set(settlements.values_list("state", flat=True)) <= {"seen", "confirmed"}
        # seq 0: the hours as first recorded (the demo login's late readings add true-up lines, seq 1).
        assert not HourlyUsage.objects.filter(
            household=household, settled_at__isnull=True, hour_start__lt=NOW.replace(minute=0), seq=0
        ).exists()
    assert not Settlement.objects.filter(household=unfunded).exists()
    assert HourlyUsage.objects.filter(household=unfunded, settled_at__isnull=True).exists()


def test_seeded_money_reconciles(seeded):
    for household in seeded:
        wallet = household.wallet
        on_ledger = LedgerOutput.objects.filter(address=wallet.address, spent_by__isnull=True)
        assert balance_satoshis(wallet) == (on_ledger.aggregate(s=Sum("satoshis"))["s"] or 0)
        paid = SettlementLine.objects.filter(settlement__household=household, released=False)
        # eur(): SQLite hands sums back through a float.
        assert eur(paid.aggregate(e=Sum("eur"))["e"]) == eur(
            Settlement.objects.filter(household=household).aggregate(e=Sum("eur"))["e"]
        )


def test_seeding_again_pays_nothing_twice(seeded):
    before = Settlement.objects.count()
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert Settlement.objects.count() == before


def test_last_month_is_stated_for_every_household_and_the_demo_login_has_a_corrective_note(seeded):
    october = date(2026, 10, 1)
    assert sorted(Statement.objects.filter(kind="statement").values_list("household_id", "month")) == [
        (household.pk, october) for household in seeded
    ]
    demo = seeded[0]
    statement, note = Statement.objects.filter(household=demo).order_by("revision")
    assert (note.kind, note.corrects, note.month, note.code) == ("corrective", statement, october, "EPR-2026-000001")
    assert note.total_eur != 0
    # The note covers exactly the true-up lines the late readings added to October; together the two
    # documents are October's ledger now, to the cent.
    start, end = statement.period_start, statement.period_end
    october = HourlyUsage.objects.filter(household=demo, hour_start__gte=start, hour_start__lt=end)
    assert note.ledger_cost_eur == eur(october.filter(seq__gt=0).aggregate(c=Sum("cost_eur"))["c"])
    ledger = october.aggregate(c=Sum("cost_eur"), t=Sum("tax_eur"))
    assert statement.total_eur + note.total_eur == (eur(ledger["c"]) + eur(ledger["t"])).quantize(Decimal("0.01"))


def test_seeding_again_issues_no_statement_twice(seeded):
    before = list(Statement.objects.values_list("code", flat=True))
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert list(Statement.objects.values_list("code", flat=True)) == before


def test_the_demo_has_a_webhook_endpoint_with_the_confirmed_settlements_waiting_for_its_receiver(seeded):
    from energypay.webhooks import demo
    from energypay.webhooks.models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.url == demo.demo_url() and endpoint.secret == demo.read_secret()
    confirmed = Settlement.objects.filter(state="confirmed").count()
    assert confirmed and WebhookDelivery.objects.filter(
        endpoint=endpoint, event__type="settlement.confirmed"
    ).count() == (confirmed)
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert WebhookEndpoint.objects.get().secret == endpoint.secret  # kept: the receiver's copy still verifies
