"""Statements in the admin: read-only, filtered by month, kind and series, totals per month, the PDF, re-sending,
the month-end summary, and issuing from the household list."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from energypay.accounts.models import User
from meters.models import HourlyUsage
from payments.statements import corrections, mail
from payments.statements.issuing import issue_households
from payments.statements.models import Statement, StatementDelivery
from payments.statements.summary import month_summary
from tests.logins import login_with_second_factor
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_END, OCTOBER_START
from tests.payments.statements.test_corrections import BACK_ON, LAST_READING, LATER

CHANGELIST = "admin:statements_statement_changelist"


@pytest.fixture
def month(make_household, make_meter):
    """Two households' October: one statement each, and a credit note for the first after a late reading."""
    tariff = kit.tou_tariff()
    first = make_household("first@example.com", tariff=tariff)
    second = make_household("second@example.com", tariff=tariff)
    kit.contracted_long_ago(first, second)
    meter, _ = make_meter(first)
    register = kit.feed(meter, OCTOBER_START, LAST_READING)
    kit.reading(meter, BACK_ON, register + 11, BACK_ON + timedelta(minutes=1))
    other, _ = make_meter(second)
    kit.feed(other, OCTOBER_START, OCTOBER_END)
    issue_households([first.pk, second.pk], OCTOBER, now=AFTER_OCTOBER)
    kit.reading(meter, OCTOBER_END, register + 2, LATER)
    corrections.check(LATER)
    return first, second


def test_the_list_shows_every_document_with_the_months_totals(staff_client, staff_user, month):
    mail.resend(Statement.objects.get(code="EP-2026-000001"), acting_user=staff_user)  # two deliveries: one document
    response = staff_client.get(reverse(CHANGELIST))
    body = response.content.decode()
    assert response.status_code == 200
    for code in ("EP-2026-000001", "EP-2026-000002", "EPR-2026-000001"):
        assert code in body
    (row,) = response.context["month_totals"]
    totals = Statement.objects.filter(month=OCTOBER)
    assert (row["documents"], row["notes"], row["households"]) == (3, 1, 2)
    assert row["total"] == sum(s.total_eur for s in totals)
    assert 'id="month-totals"' in body


def test_the_list_filters_by_month_kind_and_series(staff_client, month):
    def codes(**params) -> set[str]:
        response = staff_client.get(reverse(CHANGELIST), params)
        return {s.code for s in response.context["cl"].result_list}

    assert codes(month="2026-10") == {"EP-2026-000001", "EP-2026-000002", "EPR-2026-000001"}
    assert codes(month="2026-09") == set()
    assert codes(kind="corrective") == {"EPR-2026-000001"}
    assert codes(series__id__exact=Statement.objects.get(code="EP-2026-000001").series_id) == {
        "EP-2026-000001",
        "EP-2026-000002",
    }
    assert staff_client.get(reverse(CHANGELIST), {"month": "junk"}).status_code == 200


def test_a_statement_cannot_be_added_changed_or_deleted_in_the_admin(staff_client, month):
    statement = Statement.objects.get(code="EP-2026-000001")
    change = reverse("admin:statements_statement_change", args=[statement.pk])
    page = staff_client.get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert staff_client.post(change, {"total_eur": "0"}).status_code == 403
    assert staff_client.get(reverse("admin:statements_statement_add")).status_code == 403
    assert staff_client.post(reverse("admin:statements_statement_delete", args=[statement.pk])).status_code == 403
    response = staff_client.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [statement.pk], "post": "yes"}
    )
    assert response.status_code in (200, 302)
    assert Statement.objects.filter(pk=statement.pk, total_eur=statement.total_eur).exists()


def test_staff_download_the_pdf(staff_client, month):
    statement = Statement.objects.get(code="EPR-2026-000001")
    response = staff_client.get(reverse("admin:statements_statement_pdf", args=[statement.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    assert "EPR-2026-000001" in text and "EP-2026-000001" in text


def test_households_and_anonymous_visitors_get_no_statement_admin(household_client, client, month):
    statement = Statement.objects.first()
    for browser in (household_client, client):
        response = browser.get(reverse("admin:statements_statement_pdf", args=[statement.pk]))
        assert response.status_code == 302 and "/admin/login/" in response.url


def test_sending_again_queues_a_new_delivery_logged_with_who_asked(staff_client, staff_user, month):
    statement = Statement.objects.get(code="EP-2026-000002")
    response = staff_client.post(reverse(CHANGELIST), {"action": "resend", "_selected_action": [statement.pk]})
    assert response.status_code == 302
    assert "Queued 1 mail" in str(next(iter(get_messages(response.wsgi_request))))
    resent = StatementDelivery.objects.get(statement=statement, reason="resent")
    assert (resent.requested_by, resent.to, resent.state) == (staff_user, "second@example.com", "pending")


def test_staff_who_may_only_view_cannot_send_again(month):
    viewer = User.objects.create_user("viewer@example.com", "pw-unused-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_statement"))
    browser = login_with_second_factor(Client(), viewer)
    statement = Statement.objects.get(code="EP-2026-000002")
    page = browser.get(reverse(CHANGELIST))
    assert page.status_code == 200 and b'value="resend"' not in page.content
    browser.post(reverse(CHANGELIST), {"action": "resend", "_selected_action": [statement.pk]})
    assert not StatementDelivery.objects.filter(reason="resent").exists()


def test_the_month_end_summary_adds_up_every_document_of_the_month(staff_client, month):
    response = staff_client.get(reverse("admin:statements_statement_summary"), {"month": "2026-10"})
    assert response.status_code == 200
    summary = response.context["summary"]
    documents = Statement.objects.filter(month=OCTOBER)
    assert (summary.households, summary.statements, summary.credit_notes, summary.debit_notes) == (2, 2, 1, 0)
    assert summary.total_eur == sum(s.total_eur for s in documents)
    assert (
        summary.net_eur
        + summary.tax_eur
        + sum(line.amount_eur for s in documents for line in s.lines.filter(kind="rounding"))
        == summary.total_eur
    )
    # Paid and unpaid as each household's latest document stated them: together the month's total.
    assert summary.settled_eur + summary.unsettled_eur == summary.total_eur
    body = response.content.decode()
    assert f'id="summary-total"><strong>{summary.total_eur} EUR' in body
    assert "No tax was billed this month." in body
    assert staff_client.get(reverse("admin:statements_statement_summary"), {"month": "2099-99"}).status_code == 200


def test_the_summary_lists_each_tax_with_its_base_and_amount(month):
    # A statement with tax lines, as the tax rules will produce (21% on every hour of the second household).
    _, second = month
    november = datetime(2026, 11, 1).date()
    meter = second.meters.get()
    kit.feed(
        meter, OCTOBER_END + timedelta(hours=1), OCTOBER_END + timedelta(hours=10), register=meter.last_register_kwh
    )
    for line in HourlyUsage.objects.filter(household=second, hour_start__gte=OCTOBER_END):
        HourlyUsage.objects.filter(pk=line.pk).update(tax_rate=Decimal("0.21"), tax_eur=line.cost_eur * Decimal("0.21"))
    issue_households([second.pk], november, now=datetime(2026, 12, 2, 9, tzinfo=UTC))

    (tax,) = month_summary(november).taxes
    line = Statement.objects.get(month=november).lines.get(kind="tax")
    assert (tax.name, tax.rate_text, tax.base_eur, tax.amount_eur) == (
        "Tax at 21%",
        "21%",
        line.base_eur,
        line.amount_eur,
    )


def test_staff_issue_last_months_statement_from_the_household_list(staff_client, make_household):
    household = make_household("late@example.com")
    kit.contracted_long_ago(household)
    with time_machine.travel(datetime(2026, 11, 1, 0, 30, tzinfo=UTC), tick=False):  # 01:30 in Madrid
        response = staff_client.post(
            reverse("admin:meters_household_changelist"),
            {"action": "issue_last_month", "_selected_action": [household.pk]},
        )
    assert response.status_code == 302
    assert "1 issued" in str(next(iter(get_messages(response.wsgi_request))))
    statement = Statement.objects.get(household=household)
    assert (statement.month, statement.issued_by.email) == (OCTOBER, "staff@example.com")
