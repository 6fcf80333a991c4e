"""The pages of closing an account and withdrawing: the household's own (on closing), and staff's wallet actions,
each with a confirmation step; bad input is a clear error that changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from bsv import PrivateKey
from bsv.constants import Network
from django.urls import reverse

from meters.models import HourlyUsage, Household
from payments import keys
from payments.models import LedgerOutput, PriceQuote, Utxo, Withdrawal
from payments.wallets import balance_satoshis, open_wallet
from tests.payments.test_admin import message_of, run_action

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
FUNDS = 100_000

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def funded(household, ledger):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, FUNDS)
    ledger.mine()
    wallet.sync_coins(ledger)
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW)
    return wallet


def address() -> str:
    return PrivateKey().address(network=keys.address_network())


def test_the_household_closes_its_account_then_previews_and_confirms_its_withdrawal(
    household_client, household, funded, ledger
):
    page = household_client.get(reverse("account-close"))
    assert page.status_code == 200 and b"Close my account" in page.content

    unticked = household_client.post(reverse("account-close-confirm"), {}, follow=True)
    assert b"Tick the box" in unticked.content
    household.refresh_from_db()
    assert household.closed_at is None

    household_client.post(reverse("account-close-confirm"), {"confirm": "yes"})
    household.refresh_from_db()
    assert household.closed_at == datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    assert LogEntry.objects.filter(additional_data__action="household.closed").count() == 1

    to = address()
    shown = household_client.post(reverse("withdrawal-preview"), {"address": to})
    assert shown.status_code == 200
    preview = shown.context["preview"]
    assert preview.satoshis == FUNDS - preview.fee_satoshis and preview.fee_satoshis > 0
    assert f"{preview.fee_satoshis:,}".encode() in shown.content and to.encode() in shown.content
    assert Withdrawal.objects.count() == 0  # nothing before the confirmation

    done = household_client.post(reverse("withdrawal-confirm"), {"token": preview.token})
    withdrawal = Withdrawal.objects.get()
    assert done.status_code == 302 and done.url == reverse("withdrawal-detail", args=[withdrawal.pk])
    assert (withdrawal.source, withdrawal.requested_by) == ("household", household.user)
    withdrawal.refresh_from_db()
    assert withdrawal.state == "seen"  # sent after the commit
    assert LedgerOutput.objects.get(address=to).satoshis == preview.satoshis
    assert balance_satoshis(funded) == 0
    assert LogEntry.objects.filter(additional_data__action="withdrawal.signed").count() == 1

    again = household_client.post(reverse("withdrawal-confirm"), {"token": preview.token})
    assert again.url == done.url and Withdrawal.objects.count() == 1  # a double submit sends nothing more
    detail = household_client.get(done.url)
    assert withdrawal.txid.encode() in detail.content


# A mainnet address (the tests run on the local ledger, which takes testnet ones): fixed, so parallel
# workers collect the same test ids.
MAINNET = PrivateKey(1234567).address(network=Network.MAINNET)


@pytest.mark.parametrize("text", ["", "garbage!", "not-an-address-at-all", MAINNET, "€" * 80])
def test_a_bad_address_is_a_clear_error_and_nothing_changes(household_client, household, funded, text):
    Household.objects.filter(pk=household.pk).update(closed_at=NOW)
    response = household_client.post(reverse("withdrawal-preview"), {"address": text})
    assert response.status_code == 400
    assert response.context["error"]
    assert "preview" not in response.context
    assert Withdrawal.objects.count() == 0 and balance_satoshis(funded) == FUNDS


def test_a_household_withdraws_only_on_closing(household_client, funded):
    response = household_client.post(reverse("withdrawal-preview"), {"address": address()})
    assert response.status_code == 400 and b"Close your account first" in response.content
    response = household_client.post(reverse("withdrawal-confirm"), {"token": "x"})
    assert response.status_code == 400 and Withdrawal.objects.count() == 0


def test_a_forged_confirmation_is_refused_with_a_400(household_client, household, funded):
    Household.objects.filter(pk=household.pk).update(closed_at=NOW)
    response = household_client.post(reverse("withdrawal-confirm"), {"token": "forged"})
    assert response.status_code == 400 and b"not valid" in response.content
    assert Withdrawal.objects.count() == 0


def test_a_credit_from_a_credit_note_shows_on_the_page(household_client, household, meter_and_token):
    meter, _ = meter_and_token
    HourlyUsage.objects.create(
        household=household, meter=meter, hour_start=datetime(2026, 11, 20, 3, 0, tzinfo=UTC), seq=1,
        kwh=Decimal("-2"), rate=Decimal("0.25"), cost_eur=Decimal("-0.500000"), tax_eur=Decimal("0"),
    )  # fmt: skip
    page = household_client.get(reverse("account-close"))
    assert page.context["credit"] == Decimal("0.500000") and page.context["owed"] is None
    assert b"Credit from credit notes" in page.content


def test_another_household_never_sees_a_withdrawal(household, funded, other_client, household_client):
    Household.objects.filter(pk=household.pk).update(closed_at=NOW)
    preview = household_client.post(reverse("withdrawal-preview"), {"address": address()}).context["preview"]
    household_client.post(reverse("withdrawal-confirm"), {"token": preview.token})
    withdrawal = Withdrawal.objects.get()
    assert other_client.get(reverse("withdrawal-detail", args=[withdrawal.pk])).status_code == 404
    # Nor can it confirm the household's preview as its own.
    Household.objects.filter(pk__in=[h.pk for h in Household.objects.exclude(pk=household.pk)]).update(closed_at=NOW)
    assert other_client.post(reverse("withdrawal-confirm"), {"token": preview.token}).status_code == 400


def test_staff_withdraw_a_balance_through_a_confirmation_page_recorded_in_the_audit_trail(
    staff_client, staff_user, household, funded, ledger
):
    to = address()
    form = run_action(staff_client, "wallet", "withdraw_balance", [funded])
    assert form.status_code == 200 and b"Review" in form.content
    bad = run_action(staff_client, "wallet", "withdraw_balance", [funded], step="preview", address="nonsense")
    assert bad.status_code == 200 and b"not a Bitcoin SV address" in bad.content
    assert Withdrawal.objects.count() == 0

    shown = run_action(staff_client, "wallet", "withdraw_balance", [funded], step="preview", address=to)
    preview = shown.context["preview"]
    assert b"Confirm and send" in shown.content and str(preview.fee_satoshis).encode() in shown.content
    assert Withdrawal.objects.count() == 0

    done = run_action(staff_client, "wallet", "withdraw_balance", [funded], step="confirm", token=preview.token)
    assert done.status_code == 302 and "sent (seen on the network)" in message_of(done)
    withdrawal = Withdrawal.objects.get()
    assert (withdrawal.source, withdrawal.requested_by, withdrawal.satoshis) == ("staff", staff_user, preview.satoshis)
    assert set(Utxo.objects.filter(wallet=funded).values_list("state", flat=True)) <= {"reserved", "spent"}
    entry = LogEntry.objects.get(additional_data__action="withdrawal.signed")
    assert entry.actor == staff_user and entry.additional_data["withdrawal_id"] == withdrawal.pk

    again = run_action(staff_client, "wallet", "withdraw_balance", [funded], step="confirm", token=preview.token)
    assert "nothing more was sent" in message_of(again) and Withdrawal.objects.count() == 1
    listed = staff_client.get(reverse("admin:payments_withdrawal_changelist"))
    assert to.encode() in listed.content
    assert staff_client.get(reverse("admin:payments_withdrawal_change", args=[withdrawal.pk])).status_code == 200


def test_staff_close_an_account_after_a_confirmation_page(staff_client, staff_user, household, funded):
    page = run_action(staff_client, "wallet", "close_account_action", [funded])
    assert page.status_code == 200 and b"Close the account" in page.content
    household.refresh_from_db()
    assert household.closed_at is None
    run_action(staff_client, "wallet", "close_account_action", [funded], step="confirm")
    household.refresh_from_db()
    assert household.closed_at == datetime(2026, 11, 22, 15, 0, tzinfo=UTC)
    assert LogEntry.objects.get(additional_data__action="household.closed").actor == staff_user
