"""seed_demo on the local ledger: funded wallets, settled history, one household in arrears."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Sum

from meters.models import HourlyUsage, Household
from payments.models import LedgerOutput, Settlement, SettlementLine
from payments.wallets import balance_satoshis

NOW = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


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
        assert not HourlyUsage.objects.filter(
            household=household, settled_at__isnull=True, hour_start__lt=NOW.replace(minute=0)
        ).exists()
    assert not Settlement.objects.filter(household=unfunded).exists()
    assert HourlyUsage.objects.filter(household=unfunded, settled_at__isnull=True).exists()


def test_seeded_money_reconciles(seeded):
    for household in seeded:
        wallet = household.wallet
        on_ledger = LedgerOutput.objects.filter(address=wallet.address, spent_by__isnull=True)
        assert balance_satoshis(wallet) == (on_ledger.aggregate(s=Sum("satoshis"))["s"] or 0)
        paid = SettlementLine.objects.filter(settlement__household=household, released=False)
        assert (paid.aggregate(e=Sum("eur"))["e"] or 0) == (
            Settlement.objects.filter(household=household).aggregate(e=Sum("eur"))["e"] or 0
        )


def test_seeding_again_pays_nothing_twice(seeded):
    before = Settlement.objects.count()
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert Settlement.objects.count() == before


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
