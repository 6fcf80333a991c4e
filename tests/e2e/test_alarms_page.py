"""The alarm page in a real browser: htmx swaps the rule row, the list and the form without reloading the page.

Uses tests/e2e/conftest.py's browser (Debian's Chromium).
"""

from __future__ import annotations

import pytest
from django.db import connections

from alarms.models import AlarmRule
from energypay.accounts.models import User
from meters.models import Household


@pytest.fixture
def page(browser, live_server, transactional_db, flat_tariff):
    user = User.objects.create_user("alarms@example.com", "a-long-password-1")
    Household.objects.create(user=user, name="Browser home", timezone="Europe/Madrid", tariff=flat_tariff)
    context = browser.new_context()
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(live_server.url + "/login/")
    tab.fill("input[name=username]", "alarms@example.com")
    tab.fill("input[name=password]", "a-long-password-1")
    tab.click("button[type=submit]")
    tab.wait_for_url(live_server.url + "/")
    tab.goto(live_server.url + "/alarms/")
    tab.evaluate("window.notReloaded = true")  # gone if anything below reloads the page
    yield tab
    # The ORM calls made here run in Playwright's greenlet, which has a database connection of its own.
    connections.close_all()
    assert tab.evaluate("window.notReloaded") is True
    assert errors == []
    context.close()


def test_create_edit_pause_and_delete_without_reloading_the_page(page):
    form = page.locator("#alarm-form")
    form.locator("select[name=kind]").select_option("hourly_energy")
    page.wait_for_selector("#alarm-form >> text=Threshold in kWh")
    form = page.locator("#alarm-form")
    form.locator("input[name=threshold]").fill("-1")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#alarm-form >> text=The threshold cannot be negative.")

    page.locator("#alarm-form input[name=threshold]").fill("2.5")
    page.locator("#alarm-form button[type=submit]").click()
    page.wait_for_selector("#alarm-rules >> text=Tell me when an hour uses 2.500 kWh or more")
    assert page.locator("#alarm-form input[name=threshold]").input_value() == ""
    rule = AlarmRule.objects.get()
    row = f"#alarm-rule-{rule.pk}"

    page.locator(f"{row} >> text=Edit").click()
    page.locator(f"{row} input[name=threshold]").fill("4")
    page.locator(f"{row} button[type=submit]").click()
    page.wait_for_selector(f"{row} >> text=Tell me when an hour uses 4.000 kWh or more")

    page.locator(f"{row} >> text=Pause").click()
    page.wait_for_selector(f"{row} >> text=Resume")
    page.locator(f"{row} button[value='24h']").click()
    page.wait_for_selector(f"{row} >> text=No emails until")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator(f"{row} >> text=Delete").click()
    page.wait_for_selector("#no-alarm-rules")
    assert not AlarmRule.objects.exists()
