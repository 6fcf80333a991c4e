"""The settlements CSV: the household's payments created on local dates start..end, one row each."""

from __future__ import annotations

import csv
import html
import io
import itertools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from payments.models import PriceQuote, Settlement

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
HEADER = ["created", "period start", "period end", "kWh", "EUR", "BSV/EUR", "satoshis", "fee satoshis", "txid", "state"]
_txids = itertools.count(1)


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(days=400))


def paid_at(household, quote, created_at: datetime, *, state: str = "confirmed") -> Settlement:
    """A settlement made at ``created_at`` paying the hour before it."""
    hour = created_at.replace(minute=0, second=0, microsecond=0)
    settlement = Settlement.objects.create(
        household=household,
        period_start=hour - timedelta(hours=1),
        period_end=hour,
        kwh=Decimal("1.250000"),
        eur=Decimal("0.312500"),
        quote=quote,
        satoshis=1_041_667,
        fee_satoshis=23,
        txid=f"{next(_txids):064x}",
        raw_tx="00",
        state=state,
    )
    Settlement.objects.filter(pk=settlement.pk).update(created_at=created_at)
    return settlement


def rows(response) -> list[list[str]]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_csv_has_one_row_per_payment_with_local_times_and_exact_amounts(household_client, household, quote):
    settlement = paid_at(household, quote, datetime(2026, 11, 22, 12, 5, tzinfo=UTC))
    response = household_client.get(reverse("settlements-csv"), {"start": "2026-11-22", "end": "2026-11-22"})
    assert response["Content-Disposition"] == 'attachment; filename="settlements_2026-11-22_2026-11-22.csv"'
    assert rows(response) == [
        HEADER,
        [
            "2026-11-22T13:05:00+01:00",
            "2026-11-22T12:00:00+01:00",
            "2026-11-22T13:00:00+01:00",
            "1.250000",
            "0.312500",
            "30.00000000",
            "1041667",
            "23",
            settlement.txid,
            "confirmed",
        ],
    ]


def test_the_range_is_local_dates_inclusive(household_client, household, quote):
    # Madrid is UTC+1 in November: 23:30 UTC on the 20th is already the 21st locally.
    before = paid_at(household, quote, datetime(2026, 11, 19, 22, 59, tzinfo=UTC))  # 20th 23:59 local
    first = paid_at(household, quote, datetime(2026, 11, 20, 23, 30, tzinfo=UTC))  # 21st 00:30 local
    last = paid_at(household, quote, datetime(2026, 11, 21, 22, 59, tzinfo=UTC), state="rejected")  # 21st 23:59
    after = paid_at(household, quote, datetime(2026, 11, 21, 23, 0, tzinfo=UTC))  # 22nd 00:00 local
    response = household_client.get(reverse("settlements-csv"), {"start": "2026-11-21", "end": "2026-11-21"})
    txids = [row[8] for row in rows(response)[1:]]
    assert txids == [first.txid, last.txid]  # oldest first, failed payments included
    assert before.txid not in txids and after.txid not in txids


def test_a_25_hour_local_day_is_exported_whole(household_client, household, quote):
    # Europe/Madrid leaves summer time on 25 Oct 2026: that local day runs 22:00 UTC on the 24th to 23:00 on the 25th.
    early = paid_at(household, quote, datetime(2026, 10, 24, 22, 0, tzinfo=UTC))
    late = paid_at(household, quote, datetime(2026, 10, 25, 22, 59, tzinfo=UTC))
    response = household_client.get(reverse("settlements-csv"), {"start": "2026-10-25", "end": "2026-10-25"})
    table = rows(response)
    assert [row[8] for row in table[1:]] == [early.txid, late.txid]
    assert table[1][0] == "2026-10-25T00:00:00+02:00"
    assert table[2][0] == "2026-10-25T23:59:00+01:00"


def test_without_dates_the_current_local_month_comes_as_from_usage_csv(household_client, household, quote):
    inside = paid_at(household, quote, datetime(2026, 10, 31, 23, 0, tzinfo=UTC))  # 1 Nov 00:00 local
    outside = paid_at(household, quote, datetime(2026, 10, 31, 22, 59, tzinfo=UTC))  # 31 Oct 23:59 local
    response = household_client.get(reverse("settlements-csv"))
    assert response["Content-Disposition"] == 'attachment; filename="settlements_2026-11-01_2026-11-30.csv"'
    txids = [row[8] for row in rows(response)[1:]]
    assert txids == [inside.txid]
    assert outside.txid not in txids


def test_another_household_gets_only_its_own_payments(other_client, household, other_household, quote):
    mine = paid_at(household, quote, NOW - timedelta(hours=1))
    theirs = paid_at(other_household, quote, NOW - timedelta(hours=2))
    txids = [row[8] for row in rows(other_client.get(reverse("settlements-csv")))[1:]]
    assert txids == [theirs.txid]
    assert mine.txid not in txids


def test_staff_are_sent_to_the_admin(staff_client):
    response = staff_client.get(reverse("settlements-csv"))
    assert (response.status_code, response["Location"]) == (302, reverse("admin:index"))


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(reverse("settlements-csv"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "22/11/2026"}, "start must be a date written YYYY-MM-DD, not '22/11/2026'."),
        ({"end": "2026-02-30"}, "end must be a date written YYYY-MM-DD"),
        ({"start": "20261101"}, "start must be a date written YYYY-MM-DD"),
        ({"start": "2026-W47-1"}, "start must be a date written YYYY-MM-DD"),
        ({"start": "0001-01-01", "end": "0001-01-02"}, "start must be between 1970-01-01 and 2200-12-31."),
        ({"start": "2026-11-01", "end": "9999-12-31"}, "end must be between 1970-01-01 and 2200-12-31."),
        ({"start": "2026-11-22", "end": "2026-11-01"}, "end (2026-11-01) is before start (2026-11-22)."),
        ({"start": "2025-01-01", "end": "2026-01-02"}, "At most 366 days"),
        ({"start": "x" * 5000}, "start must be a date written YYYY-MM-DD"),
    ],
)
def test_bad_dates_get_the_form_again_with_the_reason(household_client, params, message):
    response = household_client.get(reverse("settlements-csv"), params)
    assert response.status_code == 400
    assert response["Content-Type"] == "text/html; charset=utf-8"
    page = html.unescape(response.content.decode())
    error = re.search(r'<p class="message error" role="alert" id="settlements-csv-error">(.*?)</p>', page, re.S)
    assert message in error.group(1)
    assert '<form id="settlements-csv-form"' in page
    assert "x" * 30 not in page  # no echo of a huge parameter


def test_the_payments_form_offers_the_first_payment_day_to_today(household_client, household, quote):
    page = household_client.get(reverse("settlement-list")).content.decode()
    assert 'max="2026-11-22"' in page and "min=" not in page  # no payment yet: no first day
    paid_at(household, quote, datetime(2026, 11, 4, 9, tzinfo=UTC))
    page = household_client.get(reverse("settlement-list")).content.decode()
    assert page.count('min="2026-11-04"') == 2


def test_a_whole_leap_year_is_allowed(household_client, household, quote):
    inside = paid_at(household, quote, datetime(2024, 12, 31, 12, tzinfo=UTC))
    response = household_client.get(reverse("settlements-csv"), {"start": "2024-01-01", "end": "2024-12-31"})
    assert [row[8] for row in rows(response)[1:]] == [inside.txid]


def test_the_csv_takes_the_same_queries_for_few_or_many_rows(household_client, household, quote):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            rows(household_client.get(reverse("settlements-csv")))
        return len(captured)

    paid_at(household, quote, NOW - timedelta(hours=1))
    few = count()
    for hours in range(2, 40):
        paid_at(household, quote, NOW - timedelta(hours=hours))
    assert count() == few
