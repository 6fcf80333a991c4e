"""/community/ and POST /community/unlock: locked until the household pays once from its wallet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.test import Client
from django.urls import reverse

from meters.models import HourlyUsage
from payments import keys
from payments.models import CommunityPass, LedgerOutput, PriceQuote, Utxo
from payments.networks import Outcome, Reply
from payments.views import community as community_views
from payments.wallets import balance_satoshis, open_wallet

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
FUNDS = 100_000
PAGE = "/community/"
UNLOCK = "/community/unlock"


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(minutes=1))


@pytest.fixture
def funded(household, ledger, quote):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, FUNDS)
    ledger.mine()
    wallet.sync_coins(ledger)
    return wallet


def utility_received() -> list[int]:
    return list(LedgerOutput.objects.filter(address=keys.utility_address()).values_list("satoshis", flat=True))


def a_pass(household, **fields) -> CommunityPass:
    values = {
        "household": household,
        "source": CommunityPass.Source.WALLET,
        "txid": "ab" * 32,
        "raw_tx": "00",
        "satoshis": settings.COMMUNITY_PRICE_SATS,
        "fee_satoshis": 23,
        "state": CommunityPass.State.SEEN,
        "valid_until": NOW + timedelta(days=30),
    } | fields
    return CommunityPass.objects.create(**values)


# --- Who sees what -----------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    for response in (client.get(PAGE), client.post(UNLOCK)):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not CommunityPass.objects.exists()


def test_staff_without_a_household_are_sent_to_the_admin(staff_client):
    for response in (staff_client.get(PAGE), staff_client.post(UNLOCK)):
        assert response.status_code == 302
        assert response["Location"] == reverse("admin:index")
    assert not CommunityPass.objects.exists()


def test_a_locked_page_shows_the_price_the_balance_and_the_unlock_form(household_client, funded):
    response = household_client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert "1,000 sat" in html
    assert "≈ €0.000300" in html  # 1,000 sat at 30 EUR/BSV
    assert "100,000 sat" in html and "€0.03" in html  # the balance
    assert 'method="post"' in html and f'hx-post="{UNLOCK}"' in html and "hx-disable-elt" in html
    assert "csrfmiddlewaretoken" in html
    assert "Unlock for 30 days" in html
    assert "All households (kWh)" not in html


def test_an_unlocked_page_shows_the_comparison_and_the_pass(household_client, household, make_meter):
    a_pass(household)
    meters = [make_meter()[0] for _ in range(5)]
    for meter in meters:
        HourlyUsage.objects.create(
            household=meter.household, meter=meter, hour_start=datetime(2026, 11, 20, 7, tzinfo=UTC), kwh=Decimal("2")
        )
    response = household_client.get(PAGE)
    html = response.content.decode()
    assert response.status_code == 200
    assert "Unlock for 30 days" not in html
    assert "ab" * 32 in html
    assert "22 Dec 2026, 15:07" in html  # valid until, in the household's time (Madrid, UTC+1)
    assert "All households (kWh)" in html
    assert "2.000 kWh" in html  # the 08:00 bucket, five households
    assert html.count('class="num hidden-bucket"') == 23
    assert 'id="community-chart-data"' in html and settings.CHART_JS_INTEGRITY in html


def test_another_households_pass_does_not_open_the_page(other_client, household):
    a_pass(household)
    html = other_client.get(PAGE).content.decode()
    assert "Unlock for 30 days" in html
    assert "ab" * 32 not in html


def test_a_failed_pass_does_not_open_the_page(household_client, household, quote):
    a_pass(household, state=CommunityPass.State.DOUBLE_SPEND)
    html = household_client.get(PAGE).content.decode()
    assert "Unlock for 30 days" in html
    assert "refused by the network" in html


def test_an_expired_pass_locks_the_page_again(household_client, household, quote):
    a_pass(household)
    assert "Unlock for 30 days" not in household_client.get(PAGE).content.decode()
    with time_machine.travel(NOW + timedelta(days=30, seconds=1), tick=False):
        household_client.force_login(household.user)  # the session itself lasts two weeks
        assert "Unlock for 30 days" in household_client.get(PAGE).content.decode()


def test_the_page_costs_a_handful_of_queries(household_client, household, make_meter, django_assert_max_num_queries):
    a_pass(household)
    for _ in range(6):
        meter, _ = make_meter()
        for day in range(1, 20):
            HourlyUsage.objects.create(
                household=meter.household, meter=meter, hour_start=datetime(2026, 11, day, 7, tzinfo=UTC), kwh=1
            )
    with django_assert_max_num_queries(8):
        assert household_client.get(PAGE).status_code == 200


# --- Paying -------------------------------------------------------------------------------------------


def test_unlocking_pays_once_and_shows_the_confirmation_after_a_redirect(household_client, household, funded):
    response = household_client.post(UNLOCK)
    assert response.status_code == 302 and response["Location"] == PAGE
    assert utility_received() == [settings.COMMUNITY_PRICE_SATS]
    community_pass = CommunityPass.objects.get(household=household)
    assert community_pass.state == CommunityPass.State.SEEN
    html = household_client.get(PAGE).content.decode()
    assert f"Paid {settings.COMMUNITY_PRICE_SATS:,} sat" in html
    assert community_pass.txid in html
    assert "22 Dec 2026, 15:07" in html
    assert balance_satoshis(funded) == FUNDS - settings.COMMUNITY_PRICE_SATS - community_pass.fee_satoshis


def test_a_double_post_pays_once(household_client, household, funded):
    household_client.post(UNLOCK)
    again = household_client.post(UNLOCK, follow=True)
    assert "already unlocked; nothing was charged again" in again.content.decode()
    assert utility_received() == [settings.COMMUNITY_PRICE_SATS]
    assert CommunityPass.objects.count() == 1
    assert Utxo.objects.filter(state=Utxo.State.RESERVED).count() == 0


def test_an_htmx_post_answers_with_a_client_redirect(household_client, funded):
    response = household_client.post(UNLOCK, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"] == PAGE
    assert CommunityPass.objects.count() == 1


def test_too_little_money_says_so_and_changes_nothing(household_client, household, ledger, quote):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, 500)
    ledger.mine()
    wallet.sync_coins(ledger)
    response = household_client.post(UNLOCK, follow=True)
    html = response.content.decode()
    assert "Nothing was charged" in html and "Unlock for 30 days" in html
    assert not CommunityPass.objects.exists()
    assert utility_received() == []
    assert list(Utxo.objects.values_list("state", flat=True)) == [Utxo.State.AVAILABLE]


def test_a_refused_payment_says_so_and_keeps_the_page_locked(household_client, household, funded, ledger, monkeypatch):
    class Refusing:
        name = "local"

        def broadcast(self, raw_hex):
            return Reply(Outcome.REJECTED, "fee too low")

        def status(self, txid):
            return ledger.status(txid)

        def coins(self, address):
            return ledger.coins(address)

    monkeypatch.setattr(community_views, "get_network", Refusing)
    html = household_client.post(UNLOCK, follow=True).content.decode()
    assert "refused the payment" in html and "Unlock for 30 days" in html
    assert CommunityPass.objects.get().state == CommunityPass.State.REJECTED
    assert balance_satoshis(funded) == FUNDS
    assert utility_received() == []


def test_unlock_needs_post_and_a_csrf_token(household, funded):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(household.user)
    assert browser.get(UNLOCK).status_code == 405
    assert browser.post(UNLOCK).status_code == 403
    assert not CommunityPass.objects.exists()
