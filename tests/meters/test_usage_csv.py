"""GET /usage.csv: every usage line of a local date range, with the money and the payment behind it."""

from __future__ import annotations

import csv
import html
import io
import itertools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from meters.exports import HEADER
from meters.models import HourlyUsage, Meter
from payments.models import PriceQuote, Settlement, SettlementLine

NOW = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # 12:00 in Madrid
URL = reverse("usage-csv")
_numbers = itertools.count(1)


pytestmark = pytest.mark.time_machine(NOW, tick=False)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def meter(household) -> Meter:
    return Meter.objects.create(serial='SN,"7"', household=household)


def add_line(meter, hour, kwh: str, rate: str | None = "0.25") -> HourlyUsage:
    kwh_d = Decimal(kwh)
    return HourlyUsage.objects.create(
        household=meter.household,
        meter=meter,
        hour_start=hour,
        seq=next(_numbers) % 30000,
        kwh=kwh_d,
        rate=None if rate is None else Decimal(rate),
        cost_eur=None if rate is None else kwh_d * Decimal(rate),
        tax_eur=None if rate is None else Decimal("0"),  # as the ledger writes a line no tax rule taxes
    )


def settle(lines: list[HourlyUsage], satoshis: int, state=Settlement.State.SEEN) -> Settlement:
    """A settlement paying ``lines``, as payments.settlement records one."""
    quote = PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW)
    settlement = Settlement.objects.create(
        household=lines[0].household,
        period_start=min(line.hour_start for line in lines),
        period_end=max(line.hour_start for line in lines) + timedelta(hours=1),
        kwh=sum(line.kwh for line in lines),
        eur=sum(line.cost_eur for line in lines),
        quote=quote,
        satoshis=satoshis,
        fee_satoshis=30,
        txid=f"{next(_numbers):064x}",
        raw_tx="00",
        state=state,
    )
    SettlementLine.objects.bulk_create(
        SettlementLine(settlement=settlement, usage=u, household_id=u.household_id, eur=u.cost_eur) for u in lines
    )
    HourlyUsage.objects.filter(pk__in=[line.pk for line in lines]).update(settled_at=NOW)
    return settlement


def download(client, query: str = "") -> list[dict]:
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 200, response.content
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == HEADER
    return [dict(zip(HEADER, row, strict=True)) for row in rows[1:]]


def test_a_line_in_local_time_with_its_money_and_payment(household_client, meter):
    line = add_line(meter, utc(2026, 11, 22, 9), "1.5")  # EUR 0.375
    settlement = settle([line], 1_250_000)
    rows = download(household_client, "start=2026-11-22&end=2026-11-22")
    assert rows == [
        {
            "hour": "2026-11-22T10:00:00+01:00",
            "kind": "energy",
            "meter": 'SN,"7"',
            "kwh": "1.500000",
            "rate_eur_per_kwh": "0.250000",
            "eur": "0.375000",
            "tax_eur": "0.000000",
            "satoshis": "1250000",
            "txid": settlement.txid,
            "state": "seen",
        }
    ]


def test_the_file_is_a_streamed_attachment_named_for_its_dates(household_client):
    response = household_client.get(URL + "?start=2026-11-01&end=2026-11-15")
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="usage-2026-11-01-to-2026-11-15.csv"'


def test_by_default_the_current_local_month(household_client, meter):
    add_line(meter, utc(2026, 10, 31, 22), "1")  # 31 October 23:00 local
    add_line(meter, utc(2026, 10, 31, 23), "2")  # 1 November 00:00 local
    add_line(meter, utc(2026, 11, 30, 22), "3")  # 30 November 23:00 local
    add_line(meter, utc(2026, 11, 30, 23), "4")  # 1 December
    response = household_client.get(URL)
    assert 'filename="usage-2026-11-01-to-2026-11-30.csv"' in response["Content-Disposition"]
    assert [row["kwh"] for row in download(household_client)] == ["2.000000", "3.000000"]


def test_dates_are_local_and_inclusive(household_client, meter):
    for hour in (utc(2026, 11, 20, 22), utc(2026, 11, 20, 23), utc(2026, 11, 21, 22), utc(2026, 11, 21, 23)):
        add_line(meter, hour, "1")
    rows = download(household_client, "start=2026-11-21&end=2026-11-21")
    assert [row["hour"] for row in rows] == ["2026-11-21T00:00:00+01:00", "2026-11-21T23:00:00+01:00"]


def test_the_repeated_hour_of_a_dst_night_is_told_apart_by_its_offset(household_client, meter):
    add_line(meter, utc(2026, 10, 25, 0), "1")
    add_line(meter, utc(2026, 10, 25, 1), "1")
    rows = download(household_client, "start=2026-10-25&end=2026-10-25")
    assert [row["hour"] for row in rows] == ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00"]


def test_unsettled_unpriced_and_standing_lines(household_client, household, meter):
    add_line(meter, utc(2026, 11, 22, 8), "1")
    add_line(meter, utc(2026, 11, 22, 9), "2", None)
    HourlyUsage.objects.create(
        household=household, kind=HourlyUsage.Kind.STANDING, hour_start=utc(2026, 11, 22, 9), cost_eur=Decimal("0.01")
    )
    rows = download(household_client, "start=2026-11-22&end=2026-11-22")
    assert [(r["kind"], r["meter"], r["eur"], r["satoshis"], r["txid"], r["state"]) for r in rows] == [
        ("energy", 'SN,"7"', "0.250000", "", "", "unsettled"),
        ("energy", 'SN,"7"', "", "", "", "price pending"),
        ("standing", "", "0.010000", "", "", "unsettled"),
    ]
    assert rows[1]["rate_eur_per_kwh"] == "" and rows[1]["kwh"] == "2.000000"


def test_a_settlements_satoshis_are_shared_out_so_its_lines_add_up_to_them(household_client, meter):
    # EUR 0.10 each: 20 November 23:00 local, then 21 November 00:00 and 01:00 local.
    lines = [add_line(meter, hour, "0.4") for hour in (utc(2026, 11, 20, 22), utc(2026, 11, 20, 23), utc(2026, 11, 21))]
    settlement = settle(lines, 1_000)
    rows = download(household_client, "start=2026-11-20&end=2026-11-21")
    # Running shares, half up: round(1000 * 1/3) = 333, round(1000 * 2/3) = 667, 1000.
    assert [row["satoshis"] for row in rows] == ["333", "334", "333"]
    assert {row["txid"] for row in rows} == {settlement.txid}
    # A range that cuts the settlement gives its lines the same shares (not 333 and 334 afresh).
    assert [row["satoshis"] for row in download(household_client, "start=2026-11-21&end=2026-11-21")] == [
        "334",
        "333",
    ]


def test_only_the_live_payment_of_a_line_counts(household_client, meter):
    line = add_line(meter, utc(2026, 11, 22, 8), "1")
    failed = settle([line], 900_000, state=Settlement.State.REJECTED)
    SettlementLine.objects.filter(settlement=failed).update(released=True)
    paid = settle([line], 833_333)
    rows = download(household_client, "start=2026-11-22&end=2026-11-22")
    assert [(row["txid"], row["state"], row["satoshis"]) for row in rows] == [(paid.txid, "seen", "833333")]


def test_cells_a_spreadsheet_would_run_as_formulas_are_defused(household_client, household):
    meter = Meter.objects.create(serial='=HYPERLINK("http://evil")', household=household)
    add_line(meter, utc(2026, 11, 22, 8), "1")
    rows = download(household_client, "start=2026-11-22&end=2026-11-22")
    assert rows[0]["meter"] == '\'=HYPERLINK("http://evil")'


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("start=garbage", "start must be a date written YYYY-MM-DD, not 'garbage'."),
        ("end=2026-02-30", "end must be a date written YYYY-MM-DD"),
        ("start=20261101", "start must be a date written YYYY-MM-DD"),
        ("start=2026-11-10&end=2026-11-09", "end (2026-11-09) is before start (2026-11-10)"),
        ("start=2025-01-01&end=2026-01-02", "At most 366 days"),
        ("start=0001-01-01&end=0001-01-02", "start must be between"),
        ("start=2026-11-01&end=9999-12-31", "end must be between"),
        ("end=2026-10-31&start=2026-11-01", "end (2026-10-31) is before start (2026-11-01)."),
    ],
)
def test_bad_dates_get_the_form_again_with_the_reason(household_client, query, message):
    response = household_client.get(f"{URL}?{query}")
    assert response.status_code == 400
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = html.unescape(response.content.decode())
    error = re.search(r'<p class="message error" role="alert" id="csv-error">(.*?)</p>', page, re.S).group(1)
    assert message in error
    assert '<form id="csv-form"' in page and 'aria-describedby="csv-error"' in page
    assert 'max="2026-11-22"' in page  # today, in Madrid


def test_the_form_again_is_in_the_households_language_and_keeps_what_was_typed(household_client, household, meter):
    add_line(meter, utc(2026, 10, 3, 9), "1")  # the first data day: 3 October
    household.language = "es"
    household.save()
    response = household_client.get(f"{URL}?start=2026-11-10&end=2026-11-09")
    page = response.content.decode()
    assert response.status_code == 400 and '<html lang="es"' in page
    assert "el final (2026-11-09) es anterior al inicio (2026-11-10)." in page
    assert 'value="2026-11-10"' in page and 'value="2026-11-09"' in page
    assert page.count('min="2026-10-03"') == 2 and page.count('max="2026-11-22"') == 2
    assert "Descargar CSV" in page


def test_the_dashboard_form_offers_the_first_data_day_to_today(household_client, meter):
    add_line(meter, utc(2026, 11, 3, 9), "1")
    page = household_client.get(reverse("dashboard")).content.decode()
    form = page[page.index('<form id="csv-form"') :]
    form = form[: form.index("</form>")]
    # This month, cut to the days there is data for: from the first data day to today.
    assert form.count('min="2026-11-03"') == 2 and form.count('max="2026-11-22"') == 2
    assert 'name="start" value="2026-11-03"' in form and 'name="end" value="2026-11-22"' in form


def test_a_leap_year_is_one_download(household_client):
    assert household_client.get(URL + "?start=2024-01-01&end=2024-12-31").status_code == 200


def test_another_household_downloads_only_its_own_lines(other_client, other_household, meter):
    add_line(meter, utc(2026, 11, 22, 8), "1")
    theirs = Meter.objects.create(serial="THEIRS", household=other_household)
    add_line(theirs, utc(2026, 11, 22, 8), "5")
    assert [row["meter"] for row in download(other_client)] == ["THEIRS"]


def test_staff_go_to_the_admin_and_anonymous_visitors_to_log_in(staff_client, client):
    assert staff_client.get(URL)["Location"] == reverse("admin:index")
    response = client.get(URL + "?start=2026-11-01")
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_number_of_queries_does_not_grow_with_the_lines(household_client, meter):
    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            download(household_client, "start=2026-11-01&end=2026-11-30")
        return len(captured)

    settle([add_line(meter, utc(2026, 11, 2, 8), "1")], 800_000)
    few = count()
    lines = HourlyUsage.objects.bulk_create(
        HourlyUsage(
            household=meter.household,
            meter=meter,
            hour_start=utc(2026, 11, 3) + timedelta(hours=n),
            kwh=Decimal("1"),
            rate=Decimal("0.2"),
            cost_eur=Decimal("0.2"),
        )
        for n in range(300)
    )
    for chunk in range(0, 300, 30):
        settle(lines[chunk : chunk + 30], 30 * 666_667)
    assert len(download(household_client, "start=2026-11-01&end=2026-11-30")) == 301
    assert count() == few <= 6  # session, user, household, the span, the rows
