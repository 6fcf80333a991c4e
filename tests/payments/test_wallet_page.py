"""The wallet page: where to deposit (address and QR code), the balance, and money in and out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from meters.ingest import ingest_readings
from meters.schema import ReadingIn
from payments.broadcast import send_one
from payments.history import wallet_history
from payments.models import CommunityPass, PriceQuote, Settlement, Utxo, Wallet
from payments.qr import qr_svg
from payments.settlement import settle_household
from payments.wallets import open_wallet

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)  # 15:07 in Madrid
PERIOD_END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PRICE = Decimal("30")  # EUR per BSV
FUNDS = 10_000_000  # 0.1 BSV = EUR 3.00


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(
        source="fixed", bsv_eur=PRICE, fetched_at=datetime(2026, 11, 22, 14, 5, tzinfo=UTC)
    )


@pytest.fixture
def funded(household, ledger, faucet, quote) -> Wallet:
    """The household's wallet with a confirmed faucet deposit of FUNDS satoshis, seen an hour ago."""
    wallet = open_wallet(household)
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        faucet(wallet.address, FUNDS)
        ledger.mine()
        wallet.sync_coins(ledger)
    return wallet


def use_two_kwh(household, make_meter) -> None:
    """2 kWh (EUR 0.50 at the flat 0.25) from 10:00 to 12:00 UTC."""
    meter, _ = make_meter(household)
    items = [
        (i, ReadingIn(timestamp=f"2026-11-22T{t}:00Z", energy_kwh=kwh))
        for i, (t, kwh) in enumerate([("10:00", "100"), ("11:00", "101"), ("12:00", "102")])
    ]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


@pytest.fixture
def settled(funded, household, make_meter, ledger) -> Settlement:
    """A real payment of the 2 kWh, signed and accepted by the local ledger (its change is back in the wallet)."""
    use_two_kwh(household, make_meter)
    result = settle_household(household.pk, PERIOD_END, timezone.now())
    send_one(Settlement, result.settlement_id, ledger)
    settlement = Settlement.objects.get(pk=result.settlement_id)
    assert settlement.state == Settlement.State.SEEN
    return settlement


# --- Who may see what ---


@pytest.mark.parametrize("name", ["wallet", "wallet-qr"])
def test_anonymous_visitors_are_sent_to_log_in(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["wallet", "wallet-qr"])
def test_staff_are_sent_to_the_admin(staff_client, name):
    response = staff_client.get(reverse(name))
    assert (response.status_code, response["Location"]) == (302, reverse("admin:index"))
    assert not Wallet.objects.exists()


def test_each_household_sees_only_its_own_wallet(household_client, other_client, settled, other_household):
    theirs = other_client.get(reverse("wallet")).text
    mine = household_client.get(reverse("wallet")).text
    other_address = Wallet.objects.get(household=other_household).address
    assert settled.household.wallet.address in mine and other_address not in mine
    assert other_address in theirs and settled.household.wallet.address not in theirs
    assert settled.txid not in theirs
    assert reverse("settlement-detail", args=[settled.pk]) not in theirs


# --- Address and QR code ---


def test_a_household_without_a_wallet_gets_one_and_a_friendly_note(household_client, household):
    assert not Wallet.objects.filter(household=household).exists()
    response = household_client.get(reverse("wallet"))
    assert response.status_code == 200
    wallet = Wallet.objects.get(household=household)
    html = response.text
    assert f'<code id="wallet-address" class="mono">{wallet.address}</code>' in html
    assert f'<img id="wallet-qr" src="{reverse("wallet-qr")}"' in html
    assert 'id="wallet-empty"' in html
    assert 'id="no-price"' in html  # no quote at all: no EUR guessed
    assert "0 sat" in html
    household_client.get(reverse("wallet"))
    assert Wallet.objects.filter(household=household).count() == 1  # opening is idempotent


def test_the_qr_code_is_an_svg_of_the_households_own_address(
    household_client, other_client, household, other_household
):
    mine = household_client.get(reverse("wallet-qr"))
    theirs = other_client.get(reverse("wallet-qr"))
    for response in (mine, theirs):
        assert response.status_code == 200
        assert response["Content-Type"] == "image/svg+xml"
        assert "private" in response["Cache-Control"] and "no-cache" in response["Cache-Control"]
    assert mine.content.decode() == qr_svg(Wallet.objects.get(household=household).address)
    assert theirs.content.decode() == qr_svg(Wallet.objects.get(household=other_household).address)
    assert mine.content != theirs.content
    assert mine.content.startswith(b"<svg") and b'xmlns="http://www.w3.org/2000/svg"' in mine.content


# --- Balance ---


def test_the_balance_is_in_satoshis_and_eur_at_the_newest_quote(household_client, funded):
    html = household_client.get(reverse("wallet")).text
    assert 'id="balance" data-satoshis="10000000"' in html
    assert "€3.00" in html  # 0.1 BSV at 30 EUR/BSV
    assert "10,000,000 sat at €30.00/BSV" in html
    assert "as of <time" in html and "22 Nov 2026, 15:05" in html  # the quote's time, in Madrid
    assert 'id="wallet-empty"' not in html
    assert 'id="no-price"' not in html
    assert 'id="reserved" data-satoshis="0"' in html and "Nothing on its way" in html


def test_without_a_price_the_balance_says_no_price_yet(household_client, household, ledger, faucet):
    wallet = open_wallet(household)
    faucet(wallet.address, 5_000)
    ledger.mine()
    wallet.sync_coins(ledger)
    html = household_client.get(reverse("wallet")).text
    assert 'id="balance" data-satoshis="5000"' in html
    assert 'id="no-price"' in html
    assert '<div class="value">5,000 sat</div>' in html


def test_coins_held_by_a_payment_being_sent_are_shown_as_reserved(household_client, funded, household, make_meter):
    use_two_kwh(household, make_meter)
    result = settle_household(household.pk, PERIOD_END, timezone.now())  # signed, not yet broadcast
    settlement = Settlement.objects.get(pk=result.settlement_id)
    html = household_client.get(reverse("wallet")).text
    assert 'id="reserved" data-satoshis="10000000"' in html
    assert "Coins a payment on its way is spending" in html
    change = FUNDS - settlement.satoshis - settlement.fee_satoshis
    assert f'id="balance" data-satoshis="{change}"' in html


# --- History ---


def test_history_shows_the_deposit_in_and_the_payment_out_but_not_our_own_change(household_client, settled, funded):
    assert Utxo.objects.filter(wallet=funded, txid=settled.txid).exists()  # the change coin
    response = household_client.get(reverse("wallet"))
    history = response.context["history"]
    assert [(row.kind, row.satoshis) for row in history] == [
        ("settlement", settled.satoshis),
        ("deposit", FUNDS),
    ]
    assert history[0].fee_satoshis == settled.fee_satoshis and history[0].state == "seen"
    assert history[1].state == "confirmed"
    html = response.text
    assert "+10,000,000 sat" in html
    assert f"\N{MINUS SIGN}{settled.satoshis:,} sat" in html
    assert f'href="{reverse("settlement-detail", args=[settled.pk])}"' in html
    assert 'data-kind="deposit"' in html and 'data-kind="settlement"' in html
    assert html.count('class="history-row') == 2


def test_history_lists_wallet_paid_community_passes_without_their_change(settled, funded, household):
    community = CommunityPass.objects.create(
        household=household,
        source=CommunityPass.Source.WALLET,
        txid="c" * 64,
        raw_tx="00",
        satoshis=1_000,
        fee_satoshis=22,
        state=Settlement.State.SEEN,
        valid_until=NOW + timedelta(days=30),
    )
    Utxo.objects.create(wallet=funded, txid=community.txid, vout=1, satoshis=5_000, raw_parent="00")
    machine = CommunityPass.objects.create(
        source=CommunityPass.Source.X402, txid="d" * 64, raw_tx="00", satoshis=1_000, valid_until=NOW
    )
    kinds = [(row.kind, row.txid) for row in wallet_history(funded)]
    assert ("community", community.txid) in kinds
    assert ("deposit", community.txid) not in kinds
    assert all(txid != machine.txid for _, txid in kinds)


def test_history_is_newest_first_and_bounded(funded, household, quote):
    for number in range(1, 6):  # every 10 minutes since the deposit an hour ago
        paid_at(household, quote, NOW - timedelta(minutes=10 * number), txid=f"{number:064x}")
    history = wallet_history(funded, limit=3)
    assert [row.at for row in history] == sorted((row.at for row in history), reverse=True)
    assert [row.txid for row in history] == [f"{number:064x}" for number in (1, 2, 3)]


def test_a_payment_at_the_same_instant_as_a_deposit_is_listed_above_it(funded, household, quote):
    deposit_time = Utxo.objects.get(wallet=funded).created_at
    paid_at(household, quote, deposit_time, txid="a" * 64)
    assert [row.kind for row in wallet_history(funded)] == ["settlement", "deposit"]


def paid_at(household, quote, created_at: datetime, *, txid: str) -> Settlement:
    settlement = Settlement.objects.create(
        household=household,
        period_start=created_at - timedelta(hours=2),
        period_end=created_at - timedelta(hours=1),
        kwh=1,
        eur=Decimal("0.25"),
        quote=quote,
        satoshis=833_334,
        fee_satoshis=23,
        txid=txid,
        raw_tx="00",
        state="confirmed",
    )
    Settlement.objects.filter(pk=settlement.pk).update(created_at=created_at)
    return settlement


def _page_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("wallet")).status_code == 200
    return len(captured)


def test_the_page_takes_the_same_few_queries_however_long_the_history(
    household_client, settled, household, quote, ledger, faucet, django_assert_max_num_queries
):
    few = _page_queries(household_client)
    for number in range(20):
        faucet(household.wallet.address, 1_000 + number)
    ledger.mine()
    household.wallet.sync_coins(ledger)
    assert len(wallet_history(household.wallet)) == 22
    with django_assert_max_num_queries(11):  # 10, and the nav's unread alarm count
        assert household_client.get(reverse("wallet")).status_code == 200
    assert _page_queries(household_client) == few


def test_history_times_are_in_the_households_time_zone(household_client, settled):
    Settlement.objects.filter(pk=settled.pk).update(created_at=datetime(2026, 11, 22, 12, 5, tzinfo=UTC))
    assert "Sun 22 Nov 2026, 13:05" in household_client.get(reverse("wallet")).text


def test_history_links_each_transaction_to_the_explorer_on_testnet_only(household_client, settled, settings):
    settings.EXPLORER_TX_URL = "https://test.whatsonchain.com/tx/{txid}"
    deposit = next(row for row in wallet_history(settled.household.wallet) if row.incoming)
    html = household_client.get(reverse("wallet")).text
    assert f'href="https://test.whatsonchain.com/tx/{settled.txid}"' in html
    assert f'href="https://test.whatsonchain.com/tx/{deposit.txid}"' in html
    settings.EXPLORER_TX_URL = ""
    assert "explorer-link" not in household_client.get(reverse("wallet")).text


# --- EUR beside satoshis ---


def test_a_payment_shows_its_eur_at_the_quote_it_was_priced_with(household_client, settled, funded):
    html = household_client.get(reverse("wallet")).text
    row = html[html.index('data-kind="settlement"') :]
    row = row[: row.index("</tr>")]
    assert f"\N{MINUS SIGN}€{settled.eur.quantize(Decimal('0.01'))}" in row
    assert "at €30.00/BSV, the payment's price" in row
    history = wallet_history(funded)
    assert history[0].eur == settled.eur and history[0].bsv_eur == settled.quote.bsv_eur


def test_a_deposit_without_a_price_stored_at_its_time_says_so(household_client, funded):
    # The only quote was fetched at 14:05, after the deposit (13:07): no price of that time.
    html = household_client.get(reverse("wallet")).text
    row = html[html.index('data-kind="deposit"') :]
    assert "no BSV/EUR price stored for that time" in row[: row.index("</tr>")]
    assert wallet_history(funded)[0].eur is None


def test_a_deposit_is_valued_at_the_newest_quote_stored_before_it(household_client, household, ledger, faucet):
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("40"), fetched_at=NOW - timedelta(hours=3))
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("31.25"), fetched_at=NOW - timedelta(hours=2))
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("50"), fetched_at=NOW - timedelta(minutes=1))
    wallet = open_wallet(household)
    with time_machine.travel(NOW - timedelta(hours=1), tick=False):
        faucet(wallet.address, FUNDS)
        ledger.mine()
        wallet.sync_coins(ledger)
    (deposit,) = wallet_history(wallet)
    assert (deposit.bsv_eur, deposit.eur) == (Decimal("31.25"), Decimal("3.125000"))  # 0.1 BSV at 31.25
    html = household_client.get(reverse("wallet")).text
    assert "+€3.13" in html and "at €31.25/BSV, the price at that time" in html


def test_a_community_pass_is_valued_at_the_quote_of_its_time(settled, funded, household, quote):
    CommunityPass.objects.create(
        household=household,
        source=CommunityPass.Source.WALLET,
        txid="c" * 64,
        raw_tx="00",
        satoshis=1_000_000,
        fee_satoshis=22,
        state=Settlement.State.SEEN,
        valid_until=NOW + timedelta(days=30),
    )
    row = next(row for row in wallet_history(funded) if row.kind == "community")
    assert (row.bsv_eur, row.eur, row.fee_eur) == (PRICE, Decimal("0.300000"), Decimal("0.000007"))


def test_the_eur_column_is_in_spanish_too(household_client, household, settled, funded):
    household.language = "es"
    household.save()
    html = household_client.get(reverse("wallet")).text
    assert "el precio del pago" in html and "no hay precio BSV/EUR guardado de ese momento" in html
