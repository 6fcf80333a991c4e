"""Spanish and English in a real browser: the switch, money as a Spanish reader writes it, the decimal comma.

The screenshots of every household page in both languages are taken by test_accessibility.py.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connections

from alarms.models import AlarmRule
from energypay.accounts.models import User
from meters.models import Household

NBSP = "\N{NO-BREAK SPACE}"


@pytest.fixture
def household(transactional_db, flat_tariff) -> Household:
    user = User.objects.create_user("idioma@example.com", "a-long-password-1")
    return Household.objects.create(user=user, name="Casa de prueba", timezone="Europe/Madrid", tariff=flat_tariff)


@pytest.fixture
def context(browser, live_server, household):
    # The browser asks for English: the household's own choice must win once it is made.
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    yield context
    connections.close_all()  # Playwright's greenlet has a database connection of its own
    context.close()


def log_in(tab, live_server) -> None:
    tab.goto(live_server.url + "/login/")
    tab.fill("input[name=username]", "idioma@example.com")
    tab.fill("input[name=password]", "a-long-password-1")
    tab.click("button[type=submit]")
    tab.wait_for_url(live_server.url + "/")


def test_the_switch_turns_every_page_spanish_with_spanish_money_and_a_decimal_comma(context, live_server, household):
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    log_in(tab, live_server)
    assert tab.locator("html").get_attribute("lang") == "en"
    assert tab.locator("#card-today .value").inner_text() == "€0.00"

    tab.locator("form.language button[value=es]").click()
    tab.wait_for_selector("html[lang=es]")
    household.refresh_from_db()
    assert household.language == "es"
    assert tab.locator("nav.nav").inner_text().split() == [
        "Panel",
        "Pagos",
        "Monedero",
        "Resúmenes",
        "Comunidad",
        "Alarmas",
        "Avisos",
        "Tokens",
        "de",
        "la",
        "API",
    ]
    assert tab.locator("#card-today .value").inner_text() == f"0,00{NBSP}€"
    assert tab.locator("#time-zone").inner_text() == "Horas en Europe/Madrid."

    tab.goto(live_server.url + "/alarms/")
    form = tab.locator("#alarm-form")
    form.locator("select[name=kind]").select_option("daily_cost")
    tab.wait_for_selector("#alarm-form >> text=Umbral en EUR")
    tab.locator("#alarm-form input[name=threshold]").fill("3,50")
    tab.locator("#alarm-form button[type=submit]").click()
    tab.wait_for_selector(f"#alarm-rules >> text=Avísame cuando un día cueste 3,50{NBSP}€ o más")
    assert AlarmRule.objects.get(household=household).threshold == Decimal("3.50")

    # Back to English: the same rule, told the English way.
    tab.locator("form.language button[value=en]").click()
    tab.wait_for_selector("html[lang=en]")
    tab.wait_for_selector("#alarm-rules >> text=Tell me when a day costs €3.50 or more")
    assert errors == []
