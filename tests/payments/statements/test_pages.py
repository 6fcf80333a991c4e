"""The household's statements: the list, a statement's page, and the same statement as PDF, CSV and JSON.

Three personas: the household sees its own, another household gets 404s, staff are sent to the admin.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from pypdf import PdfReader

from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_END, OCTOBER_START
from tests.payments.statements.test_corrections import BACK_ON, LAST_READING

NAMES = ["statement-detail", "statement-pdf", "statement-csv", "statement-json"]


@pytest.fixture
def statement(household, make_meter, ledger) -> Statement:
    household.tariff = kit.tou_tariff()
    household.save()
    kit.contracted_long_ago(household)
    meter, _ = make_meter(household)
    # October's last hours unheard until the meter comes back on 1 November (a late reading can change them).
    register = kit.feed(meter, OCTOBER_START, LAST_READING)
    kit.reading(meter, BACK_ON, register + 11, BACK_ON + timedelta(minutes=1))
    kit.pay_until(household, ledger, datetime(2026, 10, 16, 10, 0, tzinfo=UTC))
    issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)
    return Statement.objects.get(household=household)


def pdf_text(content: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_the_list_shows_the_households_statements_with_their_totals(household_client, statement):
    response = household_client.get(reverse("statement-list"))
    body = response.content.decode()
    assert response.status_code == 200
    assert statement.code in body
    assert f"€{statement.total_eur:,}" in body
    assert "October 2026" in body
    assert reverse("statement-detail", args=[statement.pk]) in body
    assert 'aria-current="page">Statements' in body  # the navigation knows the page


def test_an_empty_list_says_when_the_first_statement_comes(household_client, db):
    response = household_client.get(reverse("statement-list"))
    assert 'id="no-statements"' in response.content.decode()


def test_the_page_shows_the_whole_document(household_client, statement):
    response = household_client.get(reverse("statement-detail", args=[statement.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert f'id="statement-number">{statement.code}<' in body
    assert f'id="statement-total-amount">€{statement.total_eur:,}<' in body
    for text in (
        "1 October 2026 \N{EN DASH} 31 October 2026",
        "Europe/Madrid",
        "Standing charge",
        "31 days",
        "€0.3500/day",
    ):
        assert text in body, text
    assert statement.issuer["name"] in body and statement.customer["name"] in body
    assert f'id="statement-settled">€{statement.settled_eur:,}<' in body
    assert statement.payments.get().txid in body
    assert 'id="statement-balance"' in body


def test_another_household_gets_404_for_each_format_of_a_statement_not_its_own(other_client, statement):
    for name in NAMES:
        assert other_client.get(reverse(name, args=[statement.pk])).status_code == 404, name
    assert statement.code not in other_client.get(reverse("statement-list")).content.decode()


def test_staff_without_a_household_are_sent_to_the_admin(staff_client, statement):
    for name in NAMES:
        response = staff_client.get(reverse(name, args=[statement.pk]))
        assert response.status_code == 302 and response.url == reverse("admin:index"), name


def test_anonymous_visitors_are_sent_to_log_in(client, statement):
    for name in NAMES:
        response = client.get(reverse(name, args=[statement.pk]))
        assert response.status_code == 302 and response.url.startswith(reverse("login")), name


def test_the_pdf_carries_the_number_and_the_total_as_text(household_client, statement):
    response = household_client.get(reverse("statement-pdf", args=[statement.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="statement-{statement.code}.pdf"'
    text = pdf_text(response.content)
    assert statement.code in text
    assert f"€{statement.total_eur:,}" in text
    assert "Standing charge" in text and statement.payments.get().txid in text.replace("\n", "")


def test_the_csv_has_one_row_per_line_with_exact_amounts(household_client, statement):
    response = household_client.get(reverse("statement-csv", args=[statement.pk]))
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:2] == ["number", "issue date"]
    assert len(rows) == 1 + statement.lines.count()
    assert sum(Decimal(row[-1]) for row in rows[1:]) == statement.total_eur
    assert {row[5] for row in rows[1:]} >= {"energy", "standing"}


def test_the_json_has_the_lines_and_the_payments_as_decimal_strings(household_client, statement):
    response = household_client.get(reverse("statement-json", args=[statement.pk]))
    data = json.loads(response.content)
    assert (data["number"], data["total_eur"]) == (statement.code, f"{statement.total_eur:f}")
    assert sum(Decimal(line["amount_eur"]) for line in data["lines"]) == statement.total_eur
    assert data["settled"]["payments"][0]["txid"] == statement.payments.get().txid
    assert data["period"] == {
        "month": "2026-10",
        "start": OCTOBER_START.isoformat(),
        "end": OCTOBER_END.isoformat(),
        "timezone": "Europe/Madrid",
    }


def test_a_corrective_note_names_the_statement_it_corrects_and_the_statement_links_to_it(household_client, statement):
    meter = statement.household.meters.get()
    # The meter's buffered reading at midnight: October used 2 of the 11 kWh it was billed 5 of: a credit note.
    kit.reading(meter, OCTOBER_END, meter.last_register_kwh - 9, AFTER_OCTOBER)
    corrections.check(AFTER_OCTOBER + timedelta(days=1))
    note = Statement.objects.get(revision=1)

    body = household_client.get(reverse("statement-detail", args=[note.pk])).content.decode()
    assert f"Corrects statement {statement.code} of" in body
    assert "Total of this note" in body
    original = household_client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    assert reverse("statement-detail", args=[note.pk]) in original
    text = pdf_text(household_client.get(reverse("statement-pdf", args=[note.pk])).content)
    assert note.code in text and statement.code in text and note.title in text


def test_the_list_takes_the_same_few_queries_for_2_or_20_statements(household_client, household, statement):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert household_client.get(reverse("statement-list")).status_code == 200
        return len(captured)

    few = queries()
    household.__class__.objects.filter(pk=household.pk).update(created_at=datetime(2024, 1, 1, tzinfo=UTC))
    months = [datetime(2025, month, 1).date() for month in range(1, 13)] + [
        datetime(2026, month, 1).date() for month in range(1, 8)
    ]
    for month in months:
        issue_households([household.pk], month, now=AFTER_OCTOBER)
    assert Statement.objects.filter(household=household).count() == 20
    assert queries() == few


def test_an_htmx_page_request_gets_only_the_table(household_client, statement):
    response = household_client.get(
        reverse("statement-list"), headers={"HX-Request": "true", "HX-Target": "statements-page"}
    )
    body = response.content.decode()
    assert body.lstrip().startswith('<section class="panel" id="statements-page">')
    assert "<html" not in body
