"""Numbers that add up (issue 13, item 3): on the rendered dashboard, energy + standing charge + taxes is
each row's total, the rows add up to the total shown, to the cent, and that total is the one the cards,
the read API and the ledger give (cost plus taxes: payments.figures.line_amount)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db.models import Sum
from django.urls import reverse
from django.utils import translation

from energypay.readapi import UsageQuery, usage_report
from lib.dateranges import DateRange
from meters.contracts import start_contract
from meters.models import HourlyUsage
from meters.standing import accrue_standing_charges
from payments.figures import line_amount
from tests.meters.taxkit import flat, hourly_readings, mark, spanish_taxes

NOW = datetime(2026, 11, 22, 16, 20, tzinfo=UTC)  # Sunday 17:20 in Madrid
URL = reverse("dashboard")
CENT = Decimal("0.01")

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def taxed_home(make_household, make_meter):
    """A week of awkward figures: 0.337 kWh an hour at 0.1234 EUR/kWh, 0.30 EUR a day of standing charge
    (0.0125 an hour), the electricity tax and VAT 21% on both, and a meter silent since 12:00 UTC today."""
    spanish_taxes()
    household = make_household(tariff=flat("Awkward", "0.1234", "0.30"))
    mark(datetime(2026, 11, 15, 23, tzinfo=UTC))
    start_contract(household.pk, datetime(2026, 11, 15, 23, tzinfo=UTC))  # Monday 16, 00:00 in Madrid
    meter, _ = make_meter(household)
    hourly_readings(meter, datetime(2026, 11, 15, 23, tzinfo=UTC), 24 * 6 + 13, kwh_per_hour="0.337")
    accrue_standing_charges(NOW)  # the standing charge of the silent hours since
    return household


def money(text: str, language: str = "en") -> Decimal:
    """A figure as the page shows it: "€1,234.56" and "-€0.01" in English, "1.234,56 €" in Spanish."""
    text = text.replace("\xa0", " ").strip()
    digits = re.sub(r"[^0-9.,]", "", text)
    thousands, point = (".", ",") if language == "es" else (",", ".")
    value = Decimal(digits.replace(thousands, "").replace(point, "."))
    return -value if text.startswith("-") else value


def language_of(html: str) -> str:
    return re.search(r'<html lang="([a-z]+)', html).group(1)


def table(html: str) -> tuple[list[list[Decimal]], list[Decimal]]:
    """The chart table's rows (energy, standing, taxes, total) and its footer's (the same four)."""
    language = language_of(html)
    section = html[html.index('<details id="chart-table">') :]
    body = section[section.index("<tbody>") : section.index("</tbody>")]
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
        cells = re.findall(r'<td class="num[^"]*">(.*?)</td>', row, re.S)
        rows.append([money(re.sub(r"<span.*?</span>", "", cell), language) for cell in cells[2:6]])
    foot = section[section.index("<tfoot>") : section.index("</tfoot>")]
    footer = [money(cell, language) for cell in re.findall(r'<td class="num"[^>]*>(.*?)</td>', foot, re.S)[1:5]]
    return rows, footer


def shown_total(html: str) -> Decimal:
    """The total above the chart: "€10.86 for 56.616 kWh", "10,86 € por 56,616 kWh"."""
    line = re.search(r'<p class="muted" id="chart-total">\s*(.*?)</p>', html, re.S).group(1)
    return money(line.split("€")[0] + "€" if language_of(html) == "es" else line.split(" ")[0], language_of(html))


def ledger_total(household, start: datetime, end: datetime) -> Decimal:
    lines = HourlyUsage.objects.filter(household=household, hour_start__gte=start, hour_start__lt=end)
    return (lines.aggregate(total=Sum(line_amount()))["total"] or Decimal(0)).quantize(CENT, ROUND_HALF_UP)


@pytest.mark.parametrize("language", ["en", "es"])
@pytest.mark.parametrize("range_", ["day", "week", "month"])
def test_every_row_adds_up_and_the_rows_add_up_to_the_total_shown(client, taxed_home, range_, language):
    taxed_home.language = language
    taxed_home.save()
    client.force_login(taxed_home.user)
    html = client.get(f"{URL}?range={range_}").content.decode()
    rows, footer = table(html)
    assert rows, "no rows"
    for energy, standing, taxes, total in rows:
        assert energy + standing + taxes == total
        assert standing > 0  # shown in every hour and day, not hidden inside another figure
    total = footer[3]
    assert sum(row[3] for row in rows) == total == shown_total(html)
    for column in range(3):
        assert sum(row[column] for row in rows) == footer[column]
    assert footer[0] + footer[1] + footer[2] == total
    assert footer[2] > 0  # the taxes
    # The total is what the ledger says the household pays for the period (cost and taxes).
    start = {"day": datetime(2026, 11, 21, 23, tzinfo=UTC), "week": datetime(2026, 11, 15, 23, tzinfo=UTC)}
    start["month"] = datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert total == ledger_total(taxed_home, start[range_], NOW + timedelta(hours=1))


def test_the_chart_the_cards_and_the_read_api_say_the_same_for_today(client, taxed_home):
    client.force_login(taxed_home.user)
    html = client.get(URL).content.decode()
    today_card = re.search(r'id="card-today">.*?<div class="value">(.*?)</div>', html, re.S).group(1)
    assert "€" in today_card
    with translation.override("en"):
        report = usage_report(taxed_home, UsageQuery(DateRange(NOW.date(), NOW.date()), "day"))
    api = Decimal(report["totals"]["eur"]).quantize(CENT, ROUND_HALF_UP)
    assert money(today_card) == shown_total(html) == table(html)[1][3] == api
    parts = [Decimal(report["totals"][name]) for name in ("energy_eur", "standing_eur", "tax_eur")]
    assert all(abs(shown - exact) < CENT for shown, exact in zip(table(html)[1][:3], parts, strict=True))


def test_hours_still_to_come_have_no_row_and_there_is_one_rate_column(client, taxed_home):
    client.force_login(taxed_home.user)
    html = client.get(URL).content.decode()
    rows, _ = table(html)
    assert len(rows) == 17  # 00:00 to 16:00: the hour of 17:00 has no line yet, the later ones have not begun
    assert "not yet" not in html[html.index('<details id="chart-table">') :]
    head = html[html.index("<thead>") : html.index("</thead>")]
    assert head.count("EUR/kWh") == 1
    assert "Standing charge" in head and "Taxes" in head and "Energy" in head
