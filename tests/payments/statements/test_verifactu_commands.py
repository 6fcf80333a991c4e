"""The settings refuse a mode that is not supported and an issuer no record could name; ``cancel_invoice`` records
an anulación for a statement that should not exist, and refuses anything else with a clear error."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError

from payments.statements.models import InvoiceRecord
from tests.payments.statements import verifactukit


def test_sii_mode_is_refused_at_start_with_a_clear_message(settings):
    settings.INVOICE_RECORDS_MODE = "sii"
    with pytest.raises(SystemCheckError, match=r"statements.E001.*INVOICE_RECORDS_MODE=sii is not supported yet"):
        call_command("check")


def test_an_issuer_tax_id_no_record_could_carry_is_refused_at_start(settings):
    settings.STATEMENT_ISSUER_TAX_ID = "ESX-1"
    settings.VERIFACTU_PRODUCER_TAX_ID = "B12345674"
    with pytest.raises(SystemCheckError, match=r"statements.E002.*STATEMENT_ISSUER_TAX_ID='ESX-1'"):
        call_command("check")


def test_the_default_settings_pass(settings):
    call_command("check")


def test_cancel_invoice_appends_an_anulacion_once(make_household, make_meter, capsys):
    (statement,) = verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
    call_command("cancel_invoice", statement.code, "--reason", "issued to the wrong household")
    assert f"Cancelled {statement.code}: registro de anulación #2 of B12345674." in capsys.readouterr().out
    record = InvoiceRecord.objects.get(kind="anulacion")
    assert (record.statement, record.content["reason"]) == (statement, "issued to the wrong household")

    with pytest.raises(CommandError, match="already cancelled"):
        call_command("cancel_invoice", statement.code, "--reason", "again")
    with pytest.raises(CommandError, match="There is no statement 'EP-1999-000001'"):
        call_command("cancel_invoice", "EP-1999-000001", "--reason", "x")
    with pytest.raises(CommandError, match="Say why"):
        call_command("cancel_invoice", statement.code, "--reason", "  ")
    assert InvoiceRecord.objects.count() == 2


def test_staff_see_the_records_read_only_and_the_chain_checked(staff_client, make_household, make_meter):
    verifactukit.issue(verifactukit.town(make_household, make_meter, 2))
    records_page = staff_client.get("/admin/statements/invoicerecord/")
    assert records_page.status_code == 200
    assert "EP-2026-000002" in records_page.content.decode()
    record = InvoiceRecord.objects.get(position=1)
    assert staff_client.get(f"/admin/statements/invoicerecord/{record.pk}/change/").status_code == 200
    chain_page = staff_client.get(f"/admin/statements/invoicerecordchain/{record.chain_id}/change/")
    assert "Whole: every hash matches its fields" in chain_page.content.decode()
    assert staff_client.post(f"/admin/statements/invoicerecord/{record.pk}/delete/").status_code == 403
