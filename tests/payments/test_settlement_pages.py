"""The payments list, a payment's detail and its self-refreshing state badge, as the household sees them."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from meters.models import HourlyUsage
from payments.models import PriceQuote, Settlement, SettlementLine

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)  # Madrid is UTC+1 in November: 15:07 local
TESTNET_EXPLORER = "https://test.whatsonchain.com/tx/{txid}"
_txids = itertools.count(1)


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(
        source="coingecko", bsv_eur=Decimal("31.25"), fetched_at=datetime(2026, 11, 22, 12, 3, 30, tzinfo=UTC)
    )


@pytest.fixture
def meter(make_meter, household):
    return make_meter(household)[0]


def make_settlement(household, quote, *, meter=None, state="confirmed", created_at=None, hours=(), released=False):
    """A settlement paying ``hours`` ([(hour_start UTC, kWh, rate)]) of ``meter``, as the signing run records it."""
    usage = [
        HourlyUsage.objects.create(
            household=household,
            meter=meter,
            hour_start=hour,
            kwh=Decimal(kwh),
            rate=Decimal(rate),
            cost_eur=(Decimal(kwh) * Decimal(rate)).quantize(Decimal("0.000001")),
            settled_at=None if released else NOW,
        )
        for hour, kwh, rate in hours
    ]
    eur = sum((line.cost_eur for line in usage), start=Decimal("0"))
    settlement = Settlement.objects.create(
        household=household,
        period_start=min((line.hour_start for line in usage), default=NOW.replace(minute=0) - timedelta(hours=1)),
        period_end=max((line.hour_start for line in usage), default=NOW.replace(minute=0)) + timedelta(hours=1),
        kwh=sum((line.kwh for line in usage), start=Decimal("0")),
        eur=eur,
        quote=quote,
        satoshis=int(eur * 100_000_000 / quote.bsv_eur) or 1,
        fee_satoshis=23,
        txid=f"{next(_txids):064x}",
        raw_tx="00",
        state=state,
        detail="in block 812" if state == "confirmed" else "",
    )
    SettlementLine.objects.bulk_create(
        SettlementLine(
            settlement=settlement, usage=line, household_id=line.household_id, eur=line.cost_eur, released=released
        )
        for line in usage
    )
    if created_at:
        Settlement.objects.filter(pk=settlement.pk).update(created_at=created_at)
        settlement.refresh_from_db()
    return settlement


@pytest.fixture
def paid(household, quote, meter) -> Settlement:
    """Two hours (10:00 and 11:00 UTC = 11:00 and 12:00 in Madrid) paid at 12:05 UTC, confirmed."""
    return make_settlement(
        household,
        quote,
        meter=meter,
        created_at=datetime(2026, 11, 22, 12, 5, tzinfo=UTC),
        hours=[
            (datetime(2026, 11, 22, 10, tzinfo=UTC), "1.5", "0.25"),
            (datetime(2026, 11, 22, 11, tzinfo=UTC), "0.123456", "0.25"),
        ],
    )


# --- Who may see what ---


@pytest.mark.parametrize("name", ["settlement-list", "settlements-csv", "wallet"])
def test_anonymous_visitors_are_sent_to_log_in(client, db, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["settlement-detail", "settlement-state"])
def test_anonymous_visitors_are_sent_to_log_in_from_a_payment(client, paid, name):
    response = client.get(reverse(name, args=[paid.pk]))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize("name", ["settlement-detail", "settlement-state"])
def test_staff_without_a_household_are_sent_to_the_admin(staff_client, paid, name):
    response = staff_client.get(reverse(name, args=[paid.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_staff_are_sent_to_the_admin_from_the_list(staff_client, paid):
    response = staff_client.get(reverse("settlement-list"))
    assert (response.status_code, response["Location"]) == (302, reverse("admin:index"))


@pytest.mark.parametrize("name", ["settlement-detail", "settlement-state"])
def test_another_household_gets_404_for_a_payment_not_its_own(other_client, paid, name):
    assert other_client.get(reverse(name, args=[paid.pk])).status_code == 404


def test_another_household_does_not_see_the_payment_in_its_list(other_client, paid):
    response = other_client.get(reverse("settlement-list"))
    assert response.status_code == 200
    assert paid.txid not in response.text
    assert reverse("settlement-detail", args=[paid.pk]) not in response.text
    assert 'id="no-settlements"' in response.text


# --- The list ---


def test_the_list_shows_each_payment_in_the_households_local_time(household_client, paid):
    response = household_client.get(reverse("settlement-list"))
    assert response.status_code == 200
    html = response.text
    assert 'id="settlements"' in html
    assert "Sun 22 Nov 2026, 13:05" in html  # created 12:05 UTC
    assert "22 Nov 11:00 \N{EN DASH} 13:00" in html  # hours 10:00-12:00 UTC
    assert "1.623 kWh" in html
    assert "€0.41" in html  # 0.405864 rounded half up
    assert reverse("settlement-detail", args=[paid.pk]) in html
    assert 'class="badge confirmed" data-state="confirmed"' in html


def test_the_list_is_newest_first_and_paginated(household_client, household, quote, monkeypatch):
    monkeypatch.setattr("payments.views.settlements.PER_PAGE", 2)
    made = [
        make_settlement(household, quote, created_at=NOW - timedelta(hours=hours), hours=[])
        for hours in range(5, 0, -1)
    ]
    first = household_client.get(reverse("settlement-list"))
    order = [s.pk for s in first.context["page"].object_list]
    assert order == [made[4].pk, made[3].pk]
    assert 'href="?page=2"' in first.text
    assert 'href="?page=3"' in first.text
    last = household_client.get(reverse("settlement-list"), {"page": "3"})
    assert [s.pk for s in last.context["page"].object_list] == [made[0].pk]


@pytest.mark.parametrize("page", ["0", "-1", "999", "abc", "1e3", ""])
def test_a_junk_page_number_falls_back_to_a_real_page(household_client, paid, page):
    response = household_client.get(reverse("settlement-list"), {"page": page})
    assert response.status_code == 200
    assert paid.txid not in response.text  # the list shows no txid, only links
    assert reverse("settlement-detail", args=[paid.pk]) in response.text


def test_an_htmx_page_request_gets_only_the_table(household_client, paid):
    response = household_client.get(
        reverse("settlement-list"), {"page": "1"}, headers={"HX-Request": "true", "HX-Target": "settlements-page"}
    )
    assert response.status_code == 200
    assert response.text.lstrip().startswith('<section class="panel" id="settlements-page">')
    assert "<html" not in response.text
    assert reverse("settlement-detail", args=[paid.pk]) in response.text
    assert "HX-Request" in response["Vary"]


def test_an_htmx_request_for_another_target_gets_the_whole_page(household_client, paid):
    response = household_client.get(reverse("settlement-list"), headers={"HX-Request": "true", "HX-Target": "main"})
    assert "<html" in response.text


def test_the_list_has_the_csv_form_with_the_current_local_month_to_today_like_every_export(household_client, db):
    html = household_client.get(reverse("settlement-list")).text
    assert 'id="settlements-csv-form"' in html
    assert f'action="{reverse("settlements-csv")}"' in html
    assert 'name="start" value="2026-11-01"' in html
    assert 'name="end" value="2026-11-22"' in html  # today: the form offers no day to come


def _list_queries(client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("settlement-list")).status_code == 200
    return len(captured)


def test_the_list_takes_the_same_few_queries_for_3_or_30_payments(
    household_client, household, quote, django_assert_max_num_queries
):
    for _ in range(3):
        make_settlement(household, quote, state="seen")
    few = _list_queries(household_client)
    for _ in range(27):
        make_settlement(household, quote, state="confirmed")
    # session, user, household, page count, page rows, the nav's unread alarm count
    with django_assert_max_num_queries(6):
        assert household_client.get(reverse("settlement-list")).status_code == 200
    assert _list_queries(household_client) == few


# --- The state badge ---


@pytest.mark.parametrize("state", ["signed", "broadcast", "seen"])
def test_a_pending_badge_asks_for_its_state_every_10_seconds(household_client, household, quote, state):
    settlement = make_settlement(household, quote, state=state)
    url = reverse("settlement-state", args=[settlement.pk])
    for page in (reverse("settlement-list"), reverse("settlement-detail", args=[settlement.pk]), url):
        html = household_client.get(page).text
        assert f'data-state="{state}"' in html
        assert f'hx-get="{url}" hx-trigger="every 10s" hx-swap="outerHTML"' in html, page


@pytest.mark.parametrize("state", ["confirmed", "rejected", "double_spend"])
def test_a_final_badge_stops_polling(household_client, household, quote, state):
    settlement = make_settlement(household, quote, state=state)
    for page in (reverse("settlement-list"), reverse("settlement-state", args=[settlement.pk])):
        html = household_client.get(page).text
        assert f'data-state="{state}"' in html
        assert "hx-trigger" not in html
        assert reverse("settlement-state", args=[settlement.pk]) not in html


def test_the_state_endpoint_returns_the_badge_with_the_current_state(household_client, household, quote):
    settlement = make_settlement(household, quote, state="seen")
    url = reverse("settlement-state", args=[settlement.pk])
    assert 'data-state="seen"' in household_client.get(url, headers={"HX-Request": "true"}).text
    Settlement.objects.filter(pk=settlement.pk).update(state="confirmed")
    response = household_client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.text.strip().startswith('<span class="badge confirmed" data-state="confirmed"')
    assert "<html" not in response.text
    assert "Confirmed" in response.text


def test_the_state_endpoint_is_404_for_a_payment_that_does_not_exist(household_client, db):
    assert household_client.get(reverse("settlement-state", args=[999_999])).status_code == 404


# --- The detail ---


def test_the_detail_shows_what_each_hour_paid(household_client, paid, meter):
    response = household_client.get(reverse("settlement-detail", args=[paid.pk]))
    assert response.status_code == 200
    html = response.text
    assert "Payment of Sun 22 Nov 2026, 13:05" in html
    assert "Sun 22 Nov, 11:00<" in html and "Sun 22 Nov, 12:00<" in html  # the two hours, local
    assert "CET" not in html and html.count("Europe/Madrid") == 1  # one time zone, named once
    assert meter.serial in html
    assert "1.500 kWh" in html and "0.123 kWh" in html
    assert "€0.2500/kWh" in html
    assert "€0.375000" in html and "€0.38" in html  # 1.5 kWh x 0.25, exact and rounded
    assert "€0.030864" in html and "€0.03" in html
    assert "€0.405864" in html and "€0.41" in html  # the total
    assert "€31.25/BSV" in html and "coingecko" in html and "22 Nov 2026, 13:03:30" in html  # the quote, local
    assert f"{paid.satoshis:,} sat" in html
    assert "23 sat" in html
    assert paid.txid in html
    assert "in block 812" in html


def test_the_detail_links_to_the_explorer_on_testnet(household_client, paid, settings):
    settings.EXPLORER_TX_URL = TESTNET_EXPLORER
    html = household_client.get(reverse("settlement-detail", args=[paid.pk])).text
    assert f'href="https://test.whatsonchain.com/tx/{paid.txid}"' in html


def test_the_detail_has_no_explorer_link_on_the_local_ledger(household_client, paid, settings):
    settings.EXPLORER_TX_URL = ""
    html = household_client.get(reverse("settlement-detail", args=[paid.pk])).text
    assert 'id="explorer-link"' not in html
    assert "whatsonchain" not in html


def test_a_refused_payment_says_its_hours_were_paid_later_by_another(household_client, household, quote, meter):
    hour = datetime(2026, 11, 22, 10, tzinfo=UTC)
    failed = make_settlement(
        household, quote, meter=meter, state="rejected", hours=[(hour, "2", "0.25")], released=True
    )
    Settlement.objects.filter(pk=failed.pk).update(detail="mandatory-script-verify-flag-failed")
    later = Settlement.objects.create(
        household=household,
        period_start=hour,
        period_end=hour + timedelta(hours=2),
        kwh=Decimal("2"),
        eur=Decimal("0.5"),
        quote=quote,
        satoshis=1_600_000,
        fee_satoshis=23,
        txid="f" * 64,
        raw_tx="00",
        state="seen",
    )
    usage = HourlyUsage.objects.get(hour_start=hour)
    SettlementLine.objects.create(settlement=later, usage=usage, household_id=usage.household_id, eur=usage.cost_eur)

    html = household_client.get(reverse("settlement-detail", args=[failed.pk])).text
    assert "Refused, not paid" in html
    assert "mandatory-script-verify-flag-failed" in html
    assert f'<a href="{reverse("settlement-detail", args=[later.pk])}">paid later by another payment</a>' in html
    assert "€0.000000" in html  # this payment's total: nothing was paid by it


def test_a_refused_payment_whose_hours_are_still_owed_says_so(household_client, household, quote, meter):
    hour = datetime(2026, 11, 22, 10, tzinfo=UTC)
    failed = make_settlement(
        household, quote, meter=meter, state="double_spend", hours=[(hour, "2", "0.25")], released=True
    )
    html = household_client.get(reverse("settlement-detail", args=[failed.pk])).text
    assert "owed again, not paid yet" in html


def _detail_queries(client, pk) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("settlement-detail", args=[pk])).status_code == 200
    return len(captured)


def test_the_detail_takes_the_same_few_queries_for_2_or_24_hours(household_client, household, quote, meter):
    start = datetime(2026, 11, 20, tzinfo=UTC)
    two = make_settlement(
        household, quote, meter=meter, hours=[(start + timedelta(hours=h), "1", "0.2") for h in (0, 1)]
    )
    day = make_settlement(
        household, quote, meter=meter, hours=[(start + timedelta(hours=h), "1", "0.2") for h in range(2, 26)]
    )
    # <= 6 with the nav's unread alarm count
    assert _detail_queries(household_client, two.pk) == _detail_queries(household_client, day.pk) <= 6


def test_the_detail_shows_a_standing_charge_line_without_meter_or_rate(household_client, household, quote):
    hour = datetime(2026, 11, 22, 10, tzinfo=UTC)
    settlement = make_settlement(household, quote, hours=[])
    usage = HourlyUsage.objects.create(
        household=household, kind="standing", hour_start=hour, kwh=0, cost_eur=Decimal("0.012500"), settled_at=NOW
    )
    SettlementLine.objects.create(
        settlement=settlement, usage=usage, household_id=usage.household_id, eur=usage.cost_eur
    )
    html = household_client.get(reverse("settlement-detail", args=[settlement.pk])).text
    assert "Standing charge" in html
    assert "€0.012500" in html


def test_the_repeated_hour_of_a_25_hour_day_is_told_apart(household_client, household, quote, meter):
    # Madrid leaves summer time at 01:00 UTC on 25 Oct 2026: 00:00 and 01:00 UTC are both 02:00 local.
    first, second = datetime(2026, 10, 25, 0, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC)
    settlement = make_settlement(household, quote, meter=meter, hours=[(first, "1", "0.2"), (second, "1", "0.2")])
    html = household_client.get(reverse("settlement-detail", args=[settlement.pk])).text
    assert html.index("Sun 25 Oct, 02:00 CEST") < html.index("Sun 25 Oct, 02:00 CET<")


def test_head_requests_are_answered_like_get(household_client, paid):
    assert household_client.head(reverse("settlement-list")).status_code == 200
    assert household_client.head(reverse("settlement-detail", args=[paid.pk])).status_code == 200


def test_posting_to_a_page_is_not_allowed(household_client, paid):
    assert household_client.post(reverse("settlement-list")).status_code == 405


def test_times_follow_the_households_own_time_zone(client, make_household, quote):
    tokyo = make_household(timezone="Asia/Tokyo")
    settlement = make_settlement(tokyo, quote, created_at=datetime(2026, 11, 22, 12, 5, tzinfo=UTC))
    client.force_login(tokyo.user)
    assert "Sun 22 Nov 2026, 21:05" in client.get(reverse("settlement-list")).text
    assert "Payment of Sun 22 Nov 2026, 21:05" in client.get(reverse("settlement-detail", args=[settlement.pk])).text


# --- A long payment: day by day ---


def _money(text: str) -> Decimal:
    return Decimal(text.replace("€", "").replace(",", "").strip())


@pytest.fixture
def long_payment(household, quote, meter) -> Settlement:
    """56 hours of a household in arrears paid at once: Friday 20 to Sunday 22 November in Madrid, taxed."""
    start = datetime(2026, 11, 20, 3, tzinfo=UTC)  # Friday 04:00 in Madrid
    settlement = make_settlement(
        household, quote, meter=meter, hours=[(start + timedelta(hours=h), "0.337", "0.1234") for h in range(56)]
    )
    # Taxes on each line: what it paid beyond its cost (payments.figures.line_amount).
    for line in settlement.lines.select_related("usage"):
        tax = (line.usage.cost_eur * Decimal("0.271863625472")).quantize(Decimal("0.000001"))
        HourlyUsage.objects.filter(pk=line.usage_id).update(tax_eur=tax)
        SettlementLine.objects.filter(pk=line.pk).update(eur=line.usage.cost_eur + tax)
    total = sum(SettlementLine.objects.filter(settlement=settlement).values_list("eur", flat=True))
    Settlement.objects.filter(pk=settlement.pk).update(eur=total)
    settlement.refresh_from_db()
    return settlement


def test_a_long_payment_shows_its_days_that_add_up_and_one_days_lines_at_a_time(household_client, long_payment):
    url = reverse("settlement-detail", args=[long_payment.pk])
    html = household_client.get(url).text
    days = html[html.index('<table id="settlement-days">') : html.index("</table>")]
    rows = re.findall(r"<tr>\s*<th scope=\"row\"><a [^>]*>(.*?)</a></th>(.*?)</tr>", days, re.S)
    assert [label for label, _ in rows] == ["Fri 20 Nov 2026", "Sat 21 Nov 2026", "Sun 22 Nov 2026"]
    cells = [[_money(c) for c in re.findall(r'<td class="num">(.*?)</td>', row)[2:]] for _, row in rows]
    assert all(cost + taxes == paid for cost, taxes, paid in cells)
    footer = days[days.index('<tr id="settlement-totals">') :]
    totals = [_money(c) for c in re.findall(r'<td class="num">(.*?)</td>', footer)[2:]]
    assert [sum(row[i] for row in cells) for i in range(3)] == totals
    assert totals[2] == long_payment.eur.quantize(Decimal("0.01"), ROUND_HALF_UP) == totals[0] + totals[1]
    # Only the first day's lines: 20 hours (04:00 to 23:00), not 56.
    assert html.count('<tr class="line') == 20 and "Lines of Friday 20 November 2026" in html
    second = household_client.get(url + "?page=2").text
    assert second.count('<tr class="line') == 24 and "Lines of Saturday 21 November 2026" in second
    assert 'rel="prev">Previous day</a>' in second and 'rel="next">Next day</a>' in second


def test_an_htmx_day_request_gets_only_that_days_lines(household_client, long_payment):
    url = reverse("settlement-detail", args=[long_payment.pk])
    response = household_client.get(url + "?page=3", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="settlement-day")
    html = response.text
    assert html.lstrip().startswith('<section class="panel" id="settlement-day"')
    assert html.count('<tr class="line') == 12 and "settlement-days" not in html
    assert "HX-Request" in response["Vary"]


def test_a_junk_day_number_shows_a_real_day(household_client, long_payment):
    url = reverse("settlement-detail", args=[long_payment.pk])
    assert "Lines of Sunday 22 November 2026" in household_client.get(url + "?page=99").text
    assert "Lines of Friday 20 November 2026" in household_client.get(url + "?page=x").text
