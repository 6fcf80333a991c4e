"""Adding money on a phone, in Spanish: the amount for the coming days, the payment request, the deposit arriving."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.utils import timezone

from energypay.accounts.models import User
from lib.periods import floor_hour
from meters.models import HourlyUsage, Household
from payments.models import PriceQuote
from payments.networks.local import LocalLedger
from payments.wallets import open_wallet

NBSP = "\N{NO-BREAK SPACE}"
EMAIL, PASSWORD = "recarga@example.com", "a-long-password-1"


@pytest.fixture
def household(transactional_db, flat_tariff) -> Household:
    """A Spanish household that spent EUR 1.00 a day (standing charge, taxes included) over the last two days."""
    user = User.objects.create_user(EMAIL, PASSWORD)
    household = Household.objects.create(
        user=user, name="Casa", timezone="Europe/Madrid", tariff=flat_tariff, language="es"
    )
    now = timezone.now()
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("40"), fetched_at=now)
    start = floor_hour(now) - timedelta(days=2)
    HourlyUsage.objects.bulk_create(
        HourlyUsage(
            household=household,
            kind=HourlyUsage.Kind.STANDING,
            hour_start=start + timedelta(hours=n),
            cost_eur=Decimal("0.040000"),
            tax_eur=Decimal("0.001667") if n % 3 else Decimal("0.001666"),
        )
        for n in range(48)
    )
    return household


@pytest.fixture
def tab(browser, live_server, household):
    context = browser.new_context(locale="es-ES", viewport={"width": 360, "height": 800})
    tab = context.new_page()
    tab.goto(live_server.url + "/login/")
    tab.fill("input[name=username]", EMAIL)
    tab.fill("input[name=password]", PASSWORD)
    tab.click("button[type=submit]")
    tab.wait_for_url(live_server.url + "/")
    yield tab
    connections.close_all()  # Playwright's greenlet has a database connection of its own
    context.close()


def no_horizontal_scroll(tab) -> bool:
    return tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_topping_up_on_a_phone_in_spanish(tab, live_server, household):
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    address = open_wallet(household).address
    tab.goto(live_server.url + "/wallet/top-up/")
    assert tab.locator("html").get_attribute("lang") == "es"
    assert tab.locator("h1").inner_text() == "Añadir dinero"
    assert "no son dinero real" in tab.locator("#network-banner").inner_text()

    # EUR 1.00 a day for 30 days = EUR 30 = 0.75 BSV at EUR 40/BSV.
    assert tab.locator("#topup-amount").inner_text() == f"30,00{NBSP}€ = 75.000.000 sat"
    assert tab.locator("#topup-uri").get_attribute("href") == f"bitcoin:{address}?amount=0.75"
    assert tab.locator("#topup-qr").evaluate("img => img.complete && img.naturalWidth > 0")
    assert "no se corta nada" in tab.locator("#runs-out").inner_text()
    assert no_horizontal_scroll(tab)

    tab.locator("input[name=days][value='7']").check()
    tab.locator("#days-form button[type=submit]").click()
    tab.wait_for_url("**/wallet/top-up/?days=7")
    assert tab.locator("#topup-uri").get_attribute("href") == f"bitcoin:{address}?amount=0.175"
    assert tab.locator("#topup-qr").get_attribute("src").endswith("?sats=17500000")
    assert no_horizontal_scroll(tab)

    # A deposit: the list asks the network by itself, pending first, then confirmed once in a block.
    ledger = LocalLedger()
    txid = ledger.fund(address, 17_500_000)
    deposit = tab.locator(f"#deposits li[data-txid='{txid}']")
    deposit.wait_for(timeout=45_000)
    assert deposit.get_attribute("data-state") == "unconfirmed"
    assert "Pendiente" in deposit.inner_text()
    ledger.mine()
    tab.locator(f"#deposits li[data-txid='{txid}'][data-state='confirmed']").wait_for(timeout=30_000)
    assert "Confirmado" in tab.locator(f"#deposits li[data-txid='{txid}']").inner_text()
    assert no_horizontal_scroll(tab)

    # Told in the menu: the deposit seen, then confirmed (by default both in the page, only the second by mail).
    tab.goto(live_server.url + "/wallet/top-up/")
    assert tab.locator("#nav-notifications-unread").inner_text().startswith("2")
    tab.locator("#nav-notifications").click()
    tab.wait_for_url("**/notifications/")
    assert "Depósito confirmado" in tab.locator("#notifications").inner_text()
    assert no_horizontal_scroll(tab)
    assert errors == []
