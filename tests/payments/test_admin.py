"""The payments admin: staff only, read-only, no key material anywhere, actions that move money once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from energypay.accounts.models import User
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Household, Meter
from meters.schema import ReadingIn
from payments import keys
from payments.admin import actions as payments_admin
from payments.broadcast import send_one
from payments.figures import closed_period_end
from payments.models import LedgerBlock, LedgerTransaction, PriceQuote, Settlement, SettlementLine, Utxo, Wallet
from payments.networks import Outcome, Reply
from payments.networks.local import LocalLedger
from payments.settlement import settle_household
from payments.wallets import balance_satoshis, open_wallet
from tests.logins import SECOND_FACTOR_QUERIES, login_with_second_factor

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)  # the last closed hour ends at 14:00
PRICE = Decimal("30")  # EUR per BSV
FUNDS = 10_000_000  # 0.1 BSV = EUR 3.00


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=PRICE, fetched_at=NOW - timedelta(minutes=1))


def send(meter: Meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=f"2026-11-22T{t}:00Z", energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def fund(ledger: LocalLedger, wallet: Wallet, satoshis: int = FUNDS) -> None:
    ledger.fund(wallet.address, satoshis)
    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)


@pytest.fixture
def debtor(make_meter, quote) -> tuple[Household, Wallet]:
    """A household with an empty wallet that used 2 kWh (EUR 0.50) from 10:00 to 12:00: in arrears."""
    meter, _ = make_meter()
    send(meter, ("10:00", "100"), ("11:00", "101"), ("12:00", "102"))
    return meter.household, open_wallet(meter.household)


def settle(household: Household) -> Settlement:
    result = settle_household(household.pk, closed_period_end(NOW), NOW)
    assert result.status == "signed", result
    return Settlement.objects.get(pk=result.settlement_id)


@dataclass
class World:
    household: Household
    wallet: Wallet
    coin: Utxo
    settlement: Settlement
    quote: PriceQuote
    block: LedgerBlock
    ledger_tx: LedgerTransaction


@pytest.fixture
def world(debtor, ledger, quote) -> World:
    """A household that paid its usage: a seen settlement, change coins, a mined block."""
    household, wallet = debtor
    fund(ledger, wallet)
    settlement = settle(household)
    send_one(Settlement, settlement.pk, ledger)
    block = ledger.mine()
    return World(
        household=household,
        wallet=wallet,
        coin=wallet.utxos.exclude(state=Utxo.State.SPENT).get(),
        settlement=settlement,
        quote=quote,
        block=block,
        ledger_tx=LedgerTransaction.objects.get(txid=settlement.txid),
    )


# (url name, attribute of World for the object, or None for pages without one)
PAGES = [
    ("admin:app_list", "payments"),
    ("admin:payments_wallet_changelist", None),
    ("admin:payments_wallet_change", "wallet"),
    ("admin:payments_utxo_changelist", None),
    ("admin:payments_utxo_change", "coin"),
    ("admin:payments_settlement_changelist", None),
    ("admin:payments_settlement_change", "settlement"),
    ("admin:payments_pricequote_changelist", None),
    ("admin:payments_pricequote_change", "quote"),
    ("admin:payments_ledgerblock_changelist", None),
    ("admin:payments_ledgerblock_change", "block"),
    ("admin:payments_ledgertransaction_changelist", None),
    ("admin:payments_ledgertransaction_change", "ledger_tx"),
    ("admin:meters_household_changelist", None),
    ("admin:meters_household_add", None),
    ("admin:meters_household_change", "household"),
]


def page_url(world: World, name: str, attribute: str | None) -> str:
    if name == "admin:app_list":
        return reverse(name, kwargs={"app_label": attribute})
    return reverse(name, args=[getattr(world, attribute).pk] if attribute else [])


def page_id(page: tuple[str, str | None]) -> str:
    return f"{page[0].removeprefix('admin:')}({page[1] or ''})"


def run_action(client, model: str, action: str, rows, *, follow: bool = False, **fields):
    return client.post(
        reverse(f"admin:payments_{model}_changelist"),
        {"action": action, "_selected_action": [row.pk for row in rows], **fields},
        follow=follow,
    )


def message_of(response) -> str:
    """The message the request added (earlier ones stay queued: the test client follows no redirect)."""
    return str(list(get_messages(response.wsgi_request))[-1])


# --- Staff only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_payments_admin_page_answers_staff(staff_client, world, page):
    assert staff_client.get(page_url(world, *page)).status_code == 200


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_anonymous_visitors_are_sent_to_the_login(client, world, page):
    url = page_url(world, *page)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_a_logged_in_household_is_sent_to_the_login_too(client, world, page):
    client.force_login(world.household.user)
    url = page_url(world, *page)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


def test_a_household_cannot_run_a_payments_action(client, debtor, ledger):
    household, wallet = debtor
    client.force_login(household.user)

    response = run_action(client, "wallet", "fund_from_faucet", [wallet], apply="yes", bsv="1")

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
    assert balance_satoshis(wallet) == 0


# --- Nothing is edited by hand, no key is ever shown ---------------------------------------------

READ_ONLY = [
    pytest.param("wallet", "wallet", id="wallets"),
    pytest.param("utxo", "coin", id="coins"),
    pytest.param("settlement", "settlement", id="settlements"),
    pytest.param("pricequote", "quote", id="price quotes"),
    pytest.param("ledgertransaction", "ledger_tx", id="ledger transactions"),
    pytest.param("ledgerblock", "block", id="ledger blocks"),
]


@pytest.mark.parametrize(("model", "attribute"), READ_ONLY)
def test_payments_rows_cannot_be_added_changed_or_deleted_in_the_admin(staff_client, world, model, attribute):
    obj = getattr(world, attribute)
    before = type(obj).objects.values().get(pk=obj.pk)

    view = staff_client.get(reverse(f"admin:payments_{model}_change", args=[obj.pk]))
    changelist = staff_client.get(reverse(f"admin:payments_{model}_changelist"))

    assert view.status_code == 200
    assert b'name="_save"' not in view.content
    assert b"delete_selected" not in changelist.content
    assert staff_client.get(reverse(f"admin:payments_{model}_add")).status_code == 403
    assert staff_client.post(reverse(f"admin:payments_{model}_change", args=[obj.pk]), {}).status_code == 403
    delete = staff_client.post(reverse(f"admin:payments_{model}_delete", args=[obj.pk]), {"post": "yes"})
    assert delete.status_code == 403
    assert type(obj).objects.values().get(pk=obj.pk) == before


def secrets_of(*households: Household) -> list[str]:
    """The master key (as configured and as used), the households' account key and each household's key."""
    master = [str(keys._master()), str(keys._household_chain())]
    if settings.WALLET_MASTER_KEY:
        master.append(settings.WALLET_MASTER_KEY)
    if settings.WALLET_DEV_KEY_FILE.exists():
        master.append(settings.WALLET_DEV_KEY_FILE.read_text().strip())
    household_keys = [keys.household_key(h.wallet.derivation_index) for h in households]
    return [*master, *(key.wif() for key in household_keys), *(key.hex() for key in household_keys)]


def test_no_page_shows_the_master_key_or_a_household_key(staff_client, world, ledger):
    pages = [staff_client.get(page_url(world, *page)) for page in PAGES]
    pages.append(run_action(staff_client, "wallet", "fund_from_faucet", [world.wallet]))  # the faucet's form
    pages.append(run_action(staff_client, "wallet", "sync_coins_action", [world.wallet], follow=True))

    shown = "".join(page.content.decode() for page in pages)

    assert world.wallet.address in shown
    for secret in secrets_of(world.household):
        assert secret not in shown


# --- Wallets -------------------------------------------------------------------------------------


def test_creating_a_household_in_the_admin_opens_its_wallet(staff_client, flat_tariff):
    user = User.objects.create_user("new@example.com", "unused-pw-123")
    form = {
        "user": user.pk,
        "name": "New home",
        "address": "Calle Mayor 1",
        "timezone": "Europe/Madrid",
        "region": "peninsula",
        "tariff": flat_tariff.pk,
        "meters-TOTAL_FORMS": 0,
        "meters-INITIAL_FORMS": 0,
        "meters-MIN_NUM_FORMS": 0,
        "meters-MAX_NUM_FORMS": 1000,
    }

    response = staff_client.post(reverse("admin:meters_household_add"), form)

    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    household = Household.objects.get(user=user)
    wallet = Wallet.objects.get(household=household)
    assert wallet.address == keys.household_address(household.pk)
    page = staff_client.get(reverse("admin:meters_household_change", args=[household.pk]))
    assert wallet.address in page.content.decode()


def test_the_wallet_list_shows_balances_in_satoshis_and_euros_and_the_utility_address(staff_client, debtor, ledger):
    _, wallet = debtor
    fund(ledger, wallet, 10_000_000)
    fund(ledger, wallet, 5_000_000)

    response = staff_client.get(reverse("admin:payments_wallet_changelist"))

    text = response.content.decode()
    assert keys.utility_address() in text
    row = response.context["cl"].result_list[0]
    assert (row.balance_sats, row.coin_count) == (15_000_000, 2)
    assert '<td class="field-balance_eur">4.50 EUR</td>' in text  # 0.15 BSV at 30 EUR/BSV


def test_without_a_current_price_balances_show_no_euros(staff_client, debtor, ledger, quote):
    _, wallet = debtor
    fund(ledger, wallet)
    PriceQuote.objects.update(fetched_at=NOW - timedelta(hours=2))

    response = staff_client.get(reverse("admin:payments_wallet_changelist"))

    text = response.content.decode()
    assert "no current price" in text
    assert "There is no current BSV/EUR price" in text


def test_a_household_that_cannot_pay_is_shown_in_arrears(staff_client, debtor):
    household, wallet = debtor
    assert settle_household(household.pk, closed_period_end(NOW), NOW).status == "arrears"

    wallets = staff_client.get(reverse("admin:payments_wallet_changelist") + "?arrears=yes")
    households = staff_client.get(reverse("admin:meters_household_changelist"))
    detail = staff_client.get(reverse("admin:meters_household_change", args=[household.pk]))

    assert list(wallets.context["cl"].result_list) == [wallet]
    for page in (wallets, households, detail):
        assert "owes 0.500000 EUR" in page.content.decode(), page.content.decode()


def test_a_household_that_paid_is_not_in_arrears(staff_client, world):
    response = staff_client.get(reverse("admin:payments_wallet_changelist") + "?arrears=no")

    assert list(response.context["cl"].result_list) == [world.wallet]
    assert "owes" not in response.content.decode()


def test_the_wallet_page_lists_unspent_coins_without_their_parent_transactions(staff_client, world):
    response = staff_client.get(reverse("admin:payments_wallet_change", args=[world.wallet.pk]))

    text = response.content.decode()
    assert world.coin.txid in text
    assert world.coin.raw_parent not in text
    spent = world.wallet.utxos.get(state=Utxo.State.SPENT)
    assert spent.txid not in text


def test_wallets_are_found_by_household_email(staff_client, world, make_household):
    open_wallet(make_household("other@example.com"))

    response = staff_client.get(reverse("admin:payments_wallet_changelist") + f"?q={world.household.user.email}")

    assert list(response.context["cl"].result_list) == [world.wallet]


# --- Wallet actions: faucet, sync, retry ----------------------------------------------------------


def test_the_faucet_asks_for_an_amount_then_funds_each_wallet(staff_client, debtor, make_household):
    _, wallet = debtor
    other = open_wallet(make_household())

    form = run_action(staff_client, "wallet", "fund_from_faucet", [wallet, other])
    funded = run_action(staff_client, "wallet", "fund_from_faucet", [wallet, other], apply="yes", bsv="0.25")

    assert form.status_code == 200
    assert b'name="bsv"' in form.content
    assert balance_satoshis(wallet) == balance_satoshis(other) == 25_000_000
    assert message_of(funded) == "Funded 2 wallets with 25,000,000 satoshis each."


def test_the_faucet_refuses_a_bad_amount(staff_client, debtor):
    _, wallet = debtor

    response = run_action(staff_client, "wallet", "fund_from_faucet", [wallet], apply="yes", bsv="-1")

    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert balance_satoshis(wallet) == 0


def test_the_faucet_is_unavailable_off_the_local_network(staff_client, debtor, settings):
    _, wallet = debtor
    settings.BSV_NETWORK = "regtest"

    changelist = staff_client.get(reverse("admin:payments_wallet_changelist"))
    response = run_action(staff_client, "wallet", "fund_from_faucet", [wallet], apply="yes", bsv="1")

    assert b"fund_from_faucet" not in changelist.content
    assert b"sync_coins_action" in changelist.content
    assert response.status_code == 302
    assert balance_satoshis(wallet) == 0
    assert not LedgerTransaction.objects.exists()


def test_syncing_a_wallet_adds_the_coins_the_network_holds(staff_client, debtor, ledger):
    _, wallet = debtor
    ledger.fund(wallet.address, 7_000)

    response = run_action(staff_client, "wallet", "sync_coins_action", [wallet])
    again = run_action(staff_client, "wallet", "sync_coins_action", [wallet])

    assert balance_satoshis(wallet) == 7_000
    assert message_of(response) == "Synced 1 wallet: 1 new coin."
    assert message_of(again) == "Synced 1 wallet: 0 new coins."


def test_retry_now_pays_a_household_in_arrears_once_it_has_money(staff_client, debtor, ledger):
    household, wallet = debtor
    broke = run_action(staff_client, "wallet", "retry_now", [wallet])
    assert message_of(broke) == "Retried 1 household: 1 still in arrears (the wallet cannot pay)."
    assert not Settlement.objects.exists()
    fund(ledger, wallet)

    paid = run_action(staff_client, "wallet", "retry_now", [wallet])
    again = run_action(staff_client, "wallet", "retry_now", [wallet])

    settlement = Settlement.objects.get()
    assert settlement.state == Settlement.State.SEEN
    assert settlement.eur == Decimal("0.5")
    assert not HourlyUsage.objects.filter(household=household, settled_at__isnull=True, cost_eur__gt=0).exists()
    assert message_of(paid) == "Retried 1 household: 1 paid."
    assert message_of(again) == "Nothing to retry: no selected household owes anything."


def test_retry_now_defers_without_a_current_price(staff_client, debtor, ledger, quote):
    _, wallet = debtor
    fund(ledger, wallet)
    PriceQuote.objects.update(fetched_at=NOW - timedelta(hours=2))

    response = run_action(staff_client, "wallet", "retry_now", [wallet])

    assert message_of(response) == "Retried 1 household: 1 deferred (no current BSV/EUR price)."
    assert not Settlement.objects.exists()


def test_too_many_wallets_at_once_are_refused(staff_client, debtor, ledger, make_household, monkeypatch):
    monkeypatch.setattr(payments_admin, "MAX_PER_ACTION", 1)
    _, wallet = debtor
    other = open_wallet(make_household())

    response = run_action(staff_client, "wallet", "fund_from_faucet", [wallet, other], apply="yes", bsv="1")

    assert message_of(response) == "Select at most 1 rows; nothing was done."
    assert balance_satoshis(wallet) == balance_satoshis(other) == 0


def test_staff_who_may_only_view_payments_cannot_run_actions(client, debtor, ledger):
    household, wallet = debtor
    fund(ledger, wallet)
    settlement = settle(household)
    balance = balance_satoshis(wallet)
    viewer = User.objects.create_user("viewer@example.com", "unused-pw-123", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_wallet", "view_settlement"]))
    login_with_second_factor(client, viewer)

    wallets = client.get(reverse("admin:payments_wallet_changelist"))
    settlements = client.get(reverse("admin:payments_settlement_changelist"))
    run_action(client, "wallet", "fund_from_faucet", [wallet], apply="yes", bsv="1")
    run_action(client, "settlement", "rebroadcast", [settlement])

    assert wallets.status_code == settlements.status_code == 200
    assert b'name="action"' not in wallets.content
    assert b'name="action"' not in settlements.content
    assert balance_satoshis(wallet) == balance
    settlement.refresh_from_db()
    assert (settlement.state, settlement.broadcast_attempts) == (Settlement.State.SIGNED, 0)


# --- Settlements ---------------------------------------------------------------------------------


def test_a_settlement_page_shows_what_it_paid(staff_client, world):
    settlement = world.settlement

    response = staff_client.get(reverse("admin:payments_settlement_change", args=[settlement.pk]))

    text = response.content.decode()
    assert "30.00000000 EUR/BSV from fixed, fetched 2026-11-22 14:06:00 UTC" in text
    assert "<pre" in text and settlement.raw_tx in text
    assert settlement.txid in text
    assert "2026-11-22 10:00" in text and "2026-11-22 11:00" in text  # the hours, one line each
    assert SettlementLine.objects.filter(settlement=settlement).count() >= 2
    assert "Seen on the network" in text


def test_a_settlement_links_to_the_explorer_the_settings_name_and_to_none_without_one(staff_client, world, settings):
    url = reverse("admin:payments_settlement_change", args=[world.settlement.pk])
    settings.EXPLORER_TX_URL = "https://explorer.example/tx/{txid}"

    linked = staff_client.get(url).content.decode()
    settings.EXPLORER_TX_URL = ""
    plain = staff_client.get(url).content.decode()

    assert f'href="https://explorer.example/tx/{world.settlement.txid}"' in linked
    assert "explorer.example" not in plain
    assert world.settlement.txid in plain


def test_settlements_are_filtered_by_state_and_found_by_txid(staff_client, world, make_household):
    url = reverse("admin:payments_settlement_changelist")

    seen = staff_client.get(url + "?state__exact=seen")
    rejected = staff_client.get(url + "?state__exact=rejected")
    by_txid = staff_client.get(url + f"?q={world.settlement.txid}")
    by_prefix = staff_client.get(url + f"?q={world.settlement.txid[:10]}")

    assert list(seen.context["cl"].result_list) == [world.settlement]
    assert list(rejected.context["cl"].result_list) == []
    assert list(by_txid.context["cl"].result_list) == [world.settlement]
    assert list(by_prefix.context["cl"].result_list) == []  # exact txids only: an index, not a scan


def test_rebroadcast_sends_a_signed_settlement_once(staff_client, debtor, ledger):
    household, wallet = debtor
    fund(ledger, wallet)
    settlement = settle(household)  # signed, then the worker crashed before broadcasting

    first = run_action(staff_client, "settlement", "rebroadcast", [settlement])
    second = run_action(staff_client, "settlement", "rebroadcast", [settlement])

    settlement.refresh_from_db()
    assert (settlement.state, settlement.broadcast_attempts) == (Settlement.State.SEEN, 1)
    assert LedgerTransaction.objects.filter(txid=settlement.txid).count() == 1
    assert message_of(first) == "Broadcast 1 settlement: 1 seen on the network."
    assert message_of(second) == "Broadcast 0 settlements. Skipped 1 not in state signed."


def test_retry_now_pays_again_for_a_rejected_settlement(staff_client, debtor, ledger, monkeypatch):
    household, wallet = debtor
    fund(ledger, wallet)
    settlement = settle(household)
    monkeypatch.setattr(ledger, "broadcast", lambda raw: Reply(Outcome.REJECTED, "mandatory-script-verify-flag-failed"))
    assert send_one(Settlement, settlement.pk, ledger) == Settlement.State.REJECTED

    response = run_action(staff_client, "settlement", "retry_now", [settlement])

    retry = Settlement.objects.exclude(pk=settlement.pk).get()
    assert retry.state == Settlement.State.SEEN
    assert retry.eur == settlement.eur
    assert message_of(response) == "Retried 1 household: 1 paid."
    settlement.refresh_from_db()
    assert settlement.state == Settlement.State.REJECTED


# --- List pages cost a fixed number of queries ---------------------------------------------------


def fill(make_household, quote: PriceQuote, households: int) -> None:
    """Households with wallets, two coins each, a settlement and an open usage line: built by the ORM."""
    for number in range(households):
        household = make_household()
        wallet = open_wallet(household)
        settlement = Settlement.objects.create(
            household=household,
            period_start=NOW - timedelta(hours=3),
            period_end=NOW - timedelta(hours=2),
            kwh=Decimal("1"),
            eur=Decimal("0.25"),
            quote=quote,
            satoshis=833_334,
            fee_satoshis=23,
            txid=f"{number:064x}",
            raw_tx="00",
        )
        for vout in range(2):
            Utxo.objects.create(
                wallet=wallet, txid=f"{number + 1000:064x}", vout=vout, satoshis=1_000 + vout, raw_parent="00"
            )
        Utxo.objects.filter(wallet=wallet, vout=1).update(state=Utxo.State.RESERVED, reserved_by=settlement)
        HourlyUsage.objects.create(
            household=household,
            kind=HourlyUsage.Kind.STANDING,
            hour_start=NOW - timedelta(hours=5),
            cost_eur=Decimal("0.02"),
        )
    LocalLedger().fund(keys.household_address(1), 1_000)
    LocalLedger().mine()


LIST_PAGES = [
    pytest.param("admin:payments_wallet_changelist", "", 5, id="wallets"),
    pytest.param("admin:payments_wallet_changelist", "?arrears=yes&o=-3", 5, id="wallets in arrears by balance"),
    pytest.param("admin:payments_utxo_changelist", "", 4, id="coins"),
    pytest.param("admin:payments_settlement_changelist", "", 6, id="settlements"),
    pytest.param("admin:payments_settlement_changelist", "?state__exact=signed", 6, id="signed settlements"),
    pytest.param("admin:payments_pricequote_changelist", "", 5, id="price quotes"),
    pytest.param("admin:payments_ledgerblock_changelist", "", 5, id="ledger blocks"),
    pytest.param("admin:payments_ledgertransaction_changelist", "", 4, id="ledger transactions"),
    pytest.param("admin:meters_household_changelist", "", 6, id="households"),
]


@pytest.mark.parametrize("households", [1, 12])
@pytest.mark.parametrize(("url_name", "query", "max_queries"), LIST_PAGES)
def test_list_pages_take_the_same_few_queries_however_many_rows(
    staff_client, make_household, quote, django_assert_max_num_queries, households, url_name, query, max_queries
):
    fill(make_household, quote, households)

    with django_assert_max_num_queries(max_queries + SECOND_FACTOR_QUERIES):
        response = staff_client.get(reverse(url_name) + query)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= (1 if "ledger" in url_name or "quote" in url_name else households)


def test_the_settlement_list_shows_amounts_state_and_txid(staff_client, make_household, quote):
    fill(make_household, quote, 1)

    text = staff_client.get(reverse("admin:payments_settlement_changelist")).content.decode()

    assert "833334" in text.replace(",", "")
    assert "Signed" in text
    assert f"{0:012x}…" in text
