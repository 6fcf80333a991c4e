"""The top-up page: how much to send for the coming days, the payment request (link, QR), the deposit arriving."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import qrcode
import time_machine
from django.urls import reverse
from django.utils import timezone

from meters.models import HourlyUsage
from payments.bip21 import bsv_amount, payment_uri
from payments.models import PriceQuote, Wallet
from payments.topup import PLAIN_EUR
from payments.wallets import open_wallet
from tests.payments.test_wallet_page import NOW, funded, quote, use_two_kwh  # noqa: F401 (fixtures)

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def used(household, make_meter, funded):  # noqa: F811
    """2 kWh (EUR 0.50) today plus a standing charge line of EUR 0.10 with EUR 0.02 of tax: EUR 0.62 in the week."""
    use_two_kwh(household, make_meter)
    HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.STANDING,
        hour_start=datetime(2026, 11, 22, 11, 0, tzinfo=UTC),
        cost_eur=Decimal("0.100000"),
        tax_eur=Decimal("0.020000"),
    )
    return funded


def qr_text(svg: str) -> str:
    """What the QR code says: zbarimg reads the SVG when it is installed (Debian zbar-tools)."""
    if not shutil.which("zbarimg"):
        pytest.skip("zbarimg (Debian zbar-tools) is not installed; test_qr_modules_match checks the structure")
    result = subprocess.run(["zbarimg", "-q", "--raw", "-"], input=svg.encode(), capture_output=True, timeout=30)
    return result.stdout.decode().strip()


def dark_modules(svg: str) -> set[tuple[int, int]]:
    return {(int(x), int(y)) for x, y in re.findall(r"M(\d+),(\d+)H", svg)}


def expected_modules(data: str) -> set[tuple[int, int]]:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4)
    code.add_data(data)
    code.make(fit=True)
    return {(x + 4, y + 4) for y, row in enumerate(code.modules) for x, dark in enumerate(row) if dark}


# --- BIP21 ---


@pytest.mark.parametrize(
    ("satoshis", "amount"),
    [
        (1, "0.00000001"),
        (10, "0.0000001"),
        (50_000, "0.0005"),
        (11_666_667, "0.11666667"),
        (50_000_000, "0.5"),
        (100_000_000, "1"),
        (2_100_000_000_000_000, "21000000"),
    ],
)
def test_the_bip21_amount_is_bsv_with_at_most_8_places_and_no_trailing_zeros(satoshis, amount):
    assert bsv_amount(satoshis) == amount
    assert payment_uri("1Addr", satoshis) == f"bitcoin:1Addr?amount={amount}"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "100"])
def test_a_bip21_amount_must_be_a_positive_whole_number_of_satoshis(bad):
    with pytest.raises(ValueError):
        bsv_amount(bad)


# --- Who may see it ---


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(reverse("top-up"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_staff_are_sent_to_the_admin(staff_client):
    response = staff_client.get(reverse("top-up"))
    assert (response.status_code, response["Location"]) == (302, reverse("admin:index"))


def test_each_household_gets_a_request_for_its_own_address(household_client, other_client, used, other_household):
    mine = household_client.get(reverse("top-up")).text
    theirs = other_client.get(reverse("top-up")).text
    other_address = Wallet.objects.get(household=other_household).address
    assert used.address in mine and other_address not in mine
    assert other_address in theirs and used.address not in theirs


# --- The amount ---


def test_thirty_days_of_the_recent_average_by_default_with_the_exact_uri(household_client, used):
    response = household_client.get(reverse("top-up"))
    assert response.status_code == 200
    html = response.text
    # EUR 0.62 a day (energy, standing charge, taxes) x 30 = EUR 18.60 = 0.62 BSV at EUR 30/BSV.
    assert "€18.60 covers about 30 days at your recent average of €0.62 a day" in html
    uri = f"bitcoin:{used.address}?amount=0.62"
    assert response.context["topup"].uri == uri
    assert f'<a id="topup-uri" href="{uri}">' in html
    assert f'src="{reverse("wallet-qr")}?sats=62000000"' in html
    assert 'data-satoshis="62000000"' in html and "62,000,000 sat" in html


def test_seven_days_rounds_satoshis_half_up_at_the_current_quote(household_client, used):
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("33"), fetched_at=NOW - timedelta(minutes=1))
    response = household_client.get(reverse("top-up"), {"days": "7"})
    topup = response.context["topup"]
    # EUR 4.34 at EUR 33/BSV = 0.131515151... BSV: 13,151,515.15 sat, half up 13,151,515.
    assert (topup.eur, topup.satoshis) == (Decimal("4.34"), 13_151_515)
    assert topup.uri == f"bitcoin:{used.address}?amount=0.13151515"
    assert 'value="7" checked' in response.text


def test_an_unknown_period_says_so_and_shows_the_default(household_client, used):
    response = household_client.get(reverse("top-up"), {"days": "365"})
    assert response.status_code == 200
    assert response.context["topup"].days == 30
    assert 'id="bad-days"' in response.text and "showing 30 days" in response.text


def test_balance_and_days_left_at_the_recent_rate(household_client, used):
    html = household_client.get(reverse("top-up")).text
    # EUR 3.00 in the wallet, EUR 0.62 of it owed: 2.38 / 0.62 a day = 3 whole days.
    assert 'id="topup-balance" data-satoshis="10000000"' in html and "€3.00" in html
    assert "€0.62 of it pays hours already used." in html
    assert "3 days" in html


def test_what_happens_when_the_balance_runs_out_is_said_plainly(household_client, used):
    html = household_client.get(reverse("top-up")).text
    assert "nothing is cut off" in html and "in arrears" in html and "try again every hour" in html


def test_a_new_household_without_history_is_offered_a_plain_amount(household_client, household, quote):  # noqa: F811
    response = household_client.get(reverse("top-up"))
    wallet = Wallet.objects.get(household=household)
    assert 'id="no-history"' in response.text and "€20.00" in response.text
    assert 'id="days-form"' not in response.text
    topup = response.context["topup"]
    assert (topup.eur, topup.satoshis) == (PLAIN_EUR, 66_666_667)  # EUR 20 at EUR 30/BSV
    assert topup.uri == f"bitcoin:{wallet.address}?amount=0.66666667"


def test_without_a_price_the_request_has_no_amount(household_client, household):
    response = household_client.get(reverse("top-up"))
    wallet = Wallet.objects.get(household=household)
    assert 'id="no-price"' in response.text
    assert response.context["topup"].uri == f"bitcoin:{wallet.address}"
    assert f'src="{reverse("wallet-qr")}"' in response.text


def test_in_spanish_money_is_written_the_spanish_way(household_client, household, used):
    household.language = "es"
    household.save(update_fields=["language"])
    html = household_client.get(reverse("top-up")).text
    assert "18,60\N{NO-BREAK SPACE}€" in html and "Añadir dinero" in html


# --- The QR code ---


def test_the_qr_code_encodes_the_exact_payment_request(household_client, used):
    svg = household_client.get(reverse("wallet-qr"), {"sats": "62000000"}).content.decode()
    assert qr_text(svg) == f"bitcoin:{used.address}?amount=0.62"


def test_qr_modules_match_the_payment_request(household_client, used):
    response = household_client.get(reverse("wallet-qr"), {"sats": "62000000"})
    assert response.status_code == 200 and response["Content-Type"] == "image/svg+xml"
    assert "private" in response["Cache-Control"]
    assert dark_modules(response.content.decode()) == expected_modules(f"bitcoin:{used.address}?amount=0.62")


@pytest.mark.parametrize("bad", ["0", "-5", "1.5", "abc", "", "٣", "2100000000000001"])
def test_a_bad_qr_amount_is_a_clear_400(household_client, household, bad):
    response = household_client.get(reverse("wallet-qr"), {"sats": bad})
    assert response.status_code == 400
    assert "whole number of satoshis" in response.text


# --- The deposit arriving ---


def test_a_deposit_shows_pending_then_confirmed_through_the_poll(household_client, household, quote, ledger):  # noqa: F811
    wallet = open_wallet(household)
    page = household_client.get(reverse("top-up")).text
    assert 'id="no-deposits"' in page and 'hx-trigger="every 30s"' in page
    txid = ledger.fund(wallet.address, 70_000)
    headers = {"HX-Request": "true", "HX-Target": "deposits"}
    with time_machine.travel(timezone.now() + timedelta(seconds=11), tick=False):
        poll = household_client.get(reverse("top-up"), headers=headers)
    assert poll.status_code == 200 and "<h1>" not in poll.text
    assert f'data-txid="{txid}" data-state="unconfirmed"' in poll.text and "Pending" in poll.text
    assert 'hx-trigger="every 10s"' in poll.text  # faster while a deposit is pending
    assert "HX-Request" in poll["Vary"]
    ledger.mine()
    with time_machine.travel(timezone.now() + timedelta(seconds=22), tick=False):
        poll = household_client.get(reverse("top-up"), headers=headers)
    assert f'data-txid="{txid}" data-state="confirmed"' in poll.text
    assert 'id="deposit-pending-text"' not in poll.text


def test_a_deposit_sent_before_the_page_opens_shows_at_once(household_client, household, quote, ledger):  # noqa: F811
    wallet = open_wallet(household)
    txid = ledger.fund(wallet.address, 70_000)
    page = household_client.get(reverse("top-up")).text
    assert f'data-txid="{txid}" data-state="unconfirmed"' in page


def test_polls_ask_the_network_at_most_every_few_seconds(household_client, household, quote, ledger):  # noqa: F811
    wallet = open_wallet(household)
    headers = {"HX-Request": "true", "HX-Target": "deposits"}
    household_client.get(reverse("top-up"), headers=headers)  # asks the network: nothing yet
    ledger.fund(wallet.address, 70_000)
    assert 'id="no-deposits"' in household_client.get(reverse("top-up"), headers=headers).text  # within 10 s
    with time_machine.travel(timezone.now() + timedelta(seconds=11), tick=False):
        assert 'data-state="unconfirmed"' in household_client.get(reverse("top-up"), headers=headers).text


def test_the_wallet_page_and_the_dashboard_link_to_the_top_up_page(household_client, household):
    assert f'href="{reverse("top-up")}"' in household_client.get(reverse("wallet")).text
    assert f'href="{reverse("top-up")}"' in household_client.get(reverse("dashboard")).text


def test_a_network_that_does_not_answer_keeps_the_last_known_list(household_client, household, quote, monkeypatch):  # noqa: F811
    from payments.models import Wallet as WalletModel
    from payments.networks import NetworkUnavailable

    def down(self, network):
        raise NetworkUnavailable("no answer")

    monkeypatch.setattr(WalletModel, "sync_coins", down)
    poll = household_client.get(reverse("top-up"), headers={"HX-Request": "true", "HX-Target": "deposits"})
    assert poll.status_code == 200 and 'id="network-silent"' in poll.text
