"""Mailing statements: the PDF goes to the household once, a failing server is retried, staff can send again."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail as outbox
from django.db import connection
from pypdf import PdfReader

from payments.statements import mail
from payments.statements.issuing import issue_households
from payments.statements.models import Statement, StatementDelivery
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_START
from tests.threads import at_once

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
REFUSING = "tests.alarms.backends.RefusingBackend"

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def statement(household, make_meter) -> Statement:
    household.tariff = kit.tou_tariff()
    household.save()
    kit.contracted_long_ago(household)
    meter, _ = make_meter(household)
    kit.feed(meter, OCTOBER_START, OCTOBER_START + timedelta(hours=30))
    issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)
    return Statement.objects.get(household=household)


def test_the_issued_statement_is_mailed_once_with_its_pdf(statement, settings):
    settings.SITE_URL = "https://energypay.example"
    assert mail.send_due() == {"sent": 1}
    assert mail.send_due() == {}

    [message] = outbox.outbox
    assert message.to == ["home@example.com"]
    assert message.subject == f"EnergyPay: your Statement {statement.code} for October 2026"
    assert f"Attached is your statement {statement.code} for October 2026: €{statement.total_eur}" in message.body
    assert f"https://energypay.example/statements/{statement.pk}/" in message.body
    [(name, content, mimetype)] = message.attachments
    assert (name, mimetype) == (f"statement-{statement.code}.pdf", "application/pdf")
    assert statement.code in PdfReader(io.BytesIO(content)).pages[0].extract_text()
    delivery = StatementDelivery.objects.get(statement=statement)
    assert (delivery.sent_at, delivery.attempts, delivery.state) == (NOW, 1, "sent")


def test_a_failing_server_is_retried_with_backoff_and_the_mail_sent_once_it_works(statement, settings, time_machine):
    settings.EMAIL_BACKEND = REFUSING
    assert mail.send_due() == {"failed": 1}
    delivery = StatementDelivery.objects.get()
    assert (delivery.attempts, delivery.next_attempt_at, delivery.state) == (1, NOW + timedelta(minutes=1), "retrying")
    assert "Connection refused" in delivery.last_error
    assert mail.send_due() == {}

    time_machine.shift(timedelta(minutes=1))
    assert mail.send_due() == {"failed": 1}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    time_machine.shift(timedelta(minutes=2))
    assert mail.send_due() == {"sent": 1}
    assert mail.send_due() == {}
    assert len(outbox.outbox) == 1
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_error, delivery.state) == (3, "", "sent")


def test_a_household_without_an_address_has_its_statement_on_its_page_and_staff_see_it_unsent(household, make_meter):
    household.user.__class__.objects.filter(pk=household.user_id).update(email="")
    kit.contracted_long_ago(household)
    issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)

    delivery = StatementDelivery.objects.get()
    assert (delivery.to, delivery.skip_reason, delivery.state) == ("", "no email address", "not sent")
    assert mail.send_due() == {}
    assert outbox.outbox == []


def test_staff_sending_again_makes_a_new_delivery_with_who_asked(statement, staff_user):
    assert mail.send_due() == {"sent": 1}
    again = mail.resend(statement, acting_user=staff_user)

    assert (again.reason, again.requested_by, again.to, again.state) == (
        "resent",
        staff_user,
        "home@example.com",
        "pending",
    )
    assert mail.send_due() == {"sent": 1}
    assert len(outbox.outbox) == 2
    assert StatementDelivery.objects.filter(statement=statement).count() == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED needs PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_a_delivery_once(household, make_meter, settings):
    settings.EMAIL_BACKEND = "tests.alarms.backends.SlowBackend"
    kit.contracted_long_ago(household)
    issue_households([household.pk], OCTOBER, now=AFTER_OCTOBER)

    results, errors = at_once(mail.send_due, mail.send_due)

    assert errors == []
    assert sorted(sum(result.values()) for result in results) == [0, 1]
    assert len(outbox.outbox) == 1
