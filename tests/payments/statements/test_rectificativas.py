"""Corrective notes are Spanish facturas rectificativas (RD 1619/2012 art. 15): in their own correlative series,
typed by cause (R1-R4) and method (by differences, I), naming the invoice they rectify and its date, chained in
VERI*FACTU like every invoice; an issued statement is never edited. A late reading after issue is R4 by
differences; a tax rate corrected after issue is R1 (test_tax_rate_correction.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client
from django.urls import reverse

from meters.models import Household
from payments.statements import corrections
from payments.statements.models import InvoiceRecord, SeriesCounter, Statement
from payments.statements.verifactu.records import verify
from tests.payments.statements import kit
from tests.payments.statements.kit import OCTOBER, OCTOBER_END, OCTOBER_START
from tests.payments.statements.test_corrections import BACK_ON, LAST_READING, LATER, issue
from tests.payments.statements.test_pages import pdf_text
from tests.threads import at_once


@pytest.fixture
def issued_pair(make_household, make_meter, settings):
    """Two households whose October was billed 5 of the 11 kWh their meters counted across the month's end
    (19:00 to 06:00, Saturday night: 0.13 EUR/kWh); each has its statement, a NIF and a language."""
    settings.STATEMENT_ISSUER_TAX_ID = "B12345674"
    found = []
    for email, tax_id, language in (("uno@example.com", "12345678Z", "en"), ("dos@example.com", "X1234567L", "es")):
        household = make_household(email, tariff=kit.tou_tariff(f"TOU {email}"))
        Household.objects.filter(pk=household.pk).update(tax_id=tax_id, language=language)
        household.refresh_from_db()
        meter, _ = make_meter(household)
        kit.contracted_long_ago(household)
        register = kit.feed(meter, OCTOBER_START, LAST_READING)
        kit.reading(meter, BACK_ON, register + 11, BACK_ON + timedelta(minutes=1))
        found.append((household, meter, register, issue(household)))
    return found


def page(household, statement, name="statement-detail") -> str:
    browser = Client()
    browser.force_login(household.user)
    response = browser.get(reverse(name, args=[statement.pk]))
    assert response.status_code == 200
    return response.content.decode() if name == "statement-detail" else pdf_text(response.content)


def test_a_late_reading_after_issue_is_an_r4_by_differences_numbered_in_its_own_series(issued_pair):
    for _, meter, register, _ in issued_pair:
        kit.reading(meter, OCTOBER_END, register + 9, LATER)  # 9 of the 11 kWh were October's, not 5

    assert corrections.check(LATER)["corrected"] == 2

    notes = list(Statement.objects.filter(kind="corrective").order_by("number"))
    # Their own series, correlative from 1 with no gap, apart from the statements' (EP-2026-000001 and 2).
    assert [note.code for note in notes] == ["EPR-2026-000001", "EPR-2026-000002"]
    assert SeriesCounter.objects.get(series__code="EPR", year=2026).last_number == 2
    for (household, _, _, statement), note in zip(issued_pair, notes, strict=True):
        assert (note.household_id, note.corrects_id) == (household.pk, statement.pk)
        assert (note.rectification_type, note.rectification_method) == ("R4", "I")
        assert note.rectification_reason == corrections.LATE_LEDGER_REASON
        assert note.total_eur == Decimal("0.52")  # 4 kWh more at 0.13
        # The statement is as issued.
        assert Statement.objects.get(pk=statement.pk).total_eur == statement.total_eur
        # Its record: R4 by differences, naming the original's number and date (dd-mm-yyyy).
        record = InvoiceRecord.objects.get(statement=note)
        assert (record.invoice_type, record.content["corrective_type"]) == ("R4", "I")
        assert record.content["corrects"] == {
            "issuer_tax_id": "B12345674",
            "number": statement.code,
            "date": "02-11-2026",
        }
        assert "Rectificación por diferencias (R4) de " + statement.code in record.content["description"]
    # One chain across both series, the rectificativas after the statements, whole.
    chain = InvoiceRecord.objects.get(statement=notes[0]).chain
    assert list(chain.records.order_by("position").values_list("invoice_number", "invoice_type")) == [
        ("EP-2026-000001", "F1"),
        ("EP-2026-000002", "F1"),
        ("EPR-2026-000001", "R4"),
        ("EPR-2026-000002", "R4"),
    ]
    assert verify(chain) == []

    # The page and the PDF say what it is, its type, its cause and what it rectifies, in the reader's language.
    (english, original_en), (spanish, original_es) = [(h, s) for h, _, _, s in issued_pair]
    body = page(english, notes[0])
    assert "Corrective invoice (factura rectificativa)" in body
    assert "R4: other causes, by differences" in body
    assert corrections.LATE_LEDGER_REASON in body
    assert f"Rectifies invoice {original_en.code} of 2 November 2026" in body
    browser = Client()
    browser.force_login(english.user)
    data = browser.get(reverse("statement-json", args=[notes[0].pk])).json()
    assert data["rectification"] == {
        "type": "R4",
        "method": "I",
        "reason": corrections.LATE_LEDGER_REASON,
        "corrects_issue_date": "2026-11-02",
    }
    text = " ".join(page(spanish, notes[1], "statement-pdf").split())  # the PDF's lines joined
    assert "Factura rectificativa" in text
    assert "R4: resto de causas, por diferencias" in text
    assert "Lectura del contador o precio recibidos tras la emisión de la factura" in text
    assert f"Rectifica la factura {original_es.code} de 2 noviembre 2026" in text


def test_staff_choose_the_cause_where_they_correct(issued_pair, capsys):
    _, meter, register, statement = issued_pair[0]
    call_command("correct_statement", statement.code, "--type=R2", "--reason=Concurso de acreedores")
    assert "nothing to rectify" in capsys.readouterr().out  # the ledger has not changed: no note

    kit.reading(meter, OCTOBER_END, register + 9, LATER)
    call_command("correct_statement", statement.code, "--type=R1", "--reason=Error en el contrato")

    note = Statement.objects.get(corrects=statement)
    assert (note.code, note.rectification_type, note.rectification_reason) == (
        "EPR-2026-000001",
        "R1",
        "Error en el contrato",
    )
    assert InvoiceRecord.objects.get(statement=note).invoice_type == "R1"
    assert "Issued EPR-2026-000001 (R1, by differences)" in capsys.readouterr().out
    # The daily job finds the month's documents equal to the ledger: no second note.
    assert corrections.check(LATER)["corrected"] == 0


def test_only_a_corrective_note_is_typed_and_every_one_is(issued_pair):
    _, _, _, statement = issued_pair[0]
    fields = {f.name: getattr(statement, f.name) for f in Statement._meta.concrete_fields if f.name not in ("id",)}
    typed_statement = Statement(**{**fields, "code": "X-1", "number": 999, "revision": 5, "kind": "statement"})
    typed_statement.rectification_type = "R4"
    untyped_note = Statement(
        **{**fields, "code": "X-2", "number": 998, "revision": 6, "kind": "corrective", "corrects": statement}
    )
    for document in (typed_statement, untyped_note):
        with pytest.raises(IntegrityError), transaction.atomic():
            document.save()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks and concurrent transactions need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_two_rectificativas_issued_at_once_do_not_fork_the_numbering(issued_pair):
    for _, meter, register, _ in issued_pair:
        kit.reading(meter, OCTOBER_END, register + 9, LATER)

    results, errors = at_once(
        *[lambda h=h: corrections.correct(h.pk, OCTOBER, now=LATER) for h, _, _, _ in issued_pair]
    )

    assert errors == [] and all(note is not None for note in results)
    assert sorted(note.code for note in results) == ["EPR-2026-000001", "EPR-2026-000002"]
    chain = InvoiceRecord.objects.get(statement=results[0]).chain
    assert chain.length == 4 and verify(chain) == []
