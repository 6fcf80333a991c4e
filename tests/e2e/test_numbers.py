"""Numbers that add up, freshness and the download forms, in a real browser (issue 13, items 1, 3 and 5).

The demo household has taxes and a standing charge: the chart's table must show energy, standing
charge and taxes, each row adding up to its total and the rows to the total shown, to the cent, in
English and in Spanish, on a phone's width too.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import translation

from meters.models import Household
from tests.e2e.conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)

# The chart table's cells under the given column headings, as shown, in the body's rows and the foot's: columns
# are found by their heading, since which ones a table has depends on the tariff (a day on 2.0TD adds "Period").
TABLE = """(headings) => {
  const names = Array.from(document.querySelectorAll('#chart-table thead th')).map((th) => th.textContent.trim());
  const at = headings.map((heading) => names.indexOf(heading));
  if (at.includes(-1)) throw new Error(`headings ${JSON.stringify(headings)} not all in ${JSON.stringify(names)}`);
  const cells = (row) => at.map((i) => (row.children[i].childNodes[0] || {textContent: ''}).textContent.trim());
  const body = Array.from(document.querySelectorAll('#chart-table tbody tr')).map(cells);
  const foot = cells(document.querySelector('#chart-table tfoot tr'));
  return {names, body, foot, total: document.querySelector('#chart-total').textContent};
}"""
MONEY_HEADINGS = ["Energy", "Standing charge", "Taxes", "Total"]


def headings(names: list[str], language: str) -> list[str]:
    with translation.override(language):
        return [translation.gettext(name) for name in names]


def money(text: str, language: str) -> Decimal:
    text = text.replace("\xa0", " ").strip()
    digits = "".join(ch for ch in text if ch.isdigit() or ch in ".,")
    thousands, point = (".", ",") if language == "es" else (",", ".")
    value = Decimal(digits.replace(thousands, "").replace(point, "."))
    return -value if text.startswith("-") else value


def use_language(language: str) -> None:
    Household.objects.filter(user__email="demo@example.com").update(language=language)


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_chart_table_adds_up_to_the_cent_in_the_browser(page, language):
    use_language(language)
    log_in(page)
    for range_ in ("day", "week"):
        page.goto(page.base_url + f"/?range={range_}")
        page.click("#chart-table summary")
        shown = page.evaluate(TABLE, headings(MONEY_HEADINGS, language))
        rows = [[money(cell, language) for cell in row] for row in shown["body"]]
        foot = [money(cell, language) for cell in shown["foot"]]
        assert rows, range_
        for energy, standing, taxes, total in rows:
            assert energy + standing + taxes == total
        assert [sum(row[i] for row in rows) for i in range(4)] == foot
        words = shown["total"].split()
        first = words[0] if language == "en" else words[0] + " €"
        assert money(first, language) == foot[3]
        assert foot[2] > 0  # the demo's taxes are shown
        if range_ == "day":  # the demo login is on 2.0TD: each hour's energy period has a column
            periods = page.evaluate(TABLE, headings(["Period"], language))["body"]
            assert {period for (period,) in periods} <= {"P1", "P2", "P3"}
            assert len(periods) == len(rows)
        assert "not yet" not in page.inner_text("#chart-table") and "todavía no" not in page.inner_text("#chart-table")
    page.set_viewport_size({"width": 360, "height": 800})
    page.reload()
    page.click("#chart-table summary")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    screenshot(page, f"numbers-dashboard-table-{language}-360")


def test_the_dashboard_says_when_the_last_reading_arrived(page):
    log_in(page)
    page.goto(page.base_url + "/")
    assert page.inner_text("#freshness").startswith("Last reading")


def test_a_bad_range_in_the_download_form_comes_back_with_the_reason(page):
    use_language("es")
    log_in(page)
    page.goto(page.base_url + "/")
    start = page.locator("#csv-form input[name=start]")
    end = page.locator("#csv-form input[name=end]")
    today = end.get_attribute("max")
    assert start.get_attribute("min") and today and start.get_attribute("max") == today
    # Both days are allowed by the inputs, but the end comes before the start.
    first = start.get_attribute("min")
    start.fill(today)
    end.fill(first)
    if first == today:
        pytest.skip("the demo's history is one day long")
    page.locator("#csv-form [type=submit]").click()
    page.wait_for_selector("#csv-error")
    assert "anterior al inicio" in page.inner_text("#csv-error")
    assert page.locator("#csv-form input[name=start]").input_value() == today
    assert page.evaluate("() => document.documentElement.lang") == "es"
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    screenshot(page, "numbers-csv-refused-es-360")


def test_a_payment_is_shown_day_by_day_and_the_wallet_in_eur(page):
    log_in(page)
    page.goto(page.base_url + "/payments/")
    page.locator("#settlements a[href*='/payments/']").first.click()
    page.wait_for_selector("#settlement-days")
    assert page.locator("#settlement-days tbody tr").count() >= 1
    assert page.locator("#settlement-day #settlement-lines tbody tr").count() >= 1
    page.set_viewport_size({"width": 360, "height": 800})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    screenshot(page, "numbers-payment-days-360")

    page.goto(page.base_url + "/wallet/")
    payment = page.locator("#wallet-history tr[data-kind=settlement] .history-eur").first
    assert "€" in payment.inner_text() and "/BSV" in payment.inner_text()
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 360
    screenshot(page, "numbers-wallet-eur-360")
