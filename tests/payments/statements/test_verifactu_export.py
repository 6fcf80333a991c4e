"""``manage.py export_invoice_records`` writes the AEAT's XML, and the independent checker verifactu-lint
(PyPI verifactu-lint, pinned in requirements-dev.txt) finds no error in it: hashes, chain, structure,
breakdown, corrections and anulaciones."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import time_machine
from django.core.management import CommandError, call_command

from meters.models import Household
from payments.statements import corrections
from payments.statements.models import InvoiceRecord, InvoiceRecordChain
from payments.statements.verifactu import export, records
from tests.meters.taxkit import hourly_readings
from tests.meters.test_taxes import october  # noqa: F401 (the fixture: a month of two tariffs and a VAT change)
from tests.payments.statements import kit, verifactukit

LINT = shutil.which("verifactu-lint") or str(Path(__file__).resolve().parents[3] / ".venv/bin/verifactu-lint")
SF = "{" + export.SF + "}"
SFLR = "{" + export.SFLR + "}"


def lint(path: Path) -> dict:
    """verifactu-lint's JSON report of the file; its exit code is 0 only without errors."""
    run = subprocess.run([LINT, str(path), "--formato", "json"], capture_output=True, text=True, timeout=60)
    report = json.loads(run.stdout)
    return {"code": run.returncode, "report": report}


def errors_of(result: dict) -> list:
    return [finding for finding in _findings(result["report"]) if finding.get("severidad") == "error"]


def _findings(report) -> list:
    if isinstance(report, list):
        return [f for item in report for f in _findings(item)]
    if isinstance(report, dict):
        if "regla" in report:
            return [report]
        return [f for value in report.values() for f in _findings(value)]
    return []


@pytest.fixture
def chain_of_everything(make_household, make_meter, monkeypatch, october):  # noqa: F811
    """Statements with and without a customer NIF, with VAT and the electricity tax, corrective notes of both
    kinds (R4 and R5, one changing both taxes) and an anulación: one issuer's chain of seven records."""
    taxed, _ = october
    Household.objects.filter(pk=taxed.pk).update(created_at=kit.LONG_AGO)
    simple, full = verifactukit.town(make_household, make_meter, 2)
    verifactukit.issue([taxed, simple])
    verifactukit.identify(monkeypatch, [full], "12345678Z")
    statements = verifactukit.issue([full])
    verifactukit.correct(simple)
    verifactukit.correct(full)
    late_meter, _ = make_meter(taxed)  # 2 kWh of October's last hour, reported late: a note with both taxes
    with time_machine.travel(verifactukit.CORRECTED_AT, tick=False):
        hourly_readings(late_meter, kit.OCTOBER_END - timedelta(hours=1), 1, kwh_per_hour="2", first="50")
    assert corrections.correct(taxed.pk, kit.OCTOBER, now=verifactukit.CORRECTED_AT) is not None
    with time_machine.travel(datetime(2026, 11, 4, 12, 0, tzinfo=UTC), tick=False):
        records.cancel(statements[0], reason="test")
    assert InvoiceRecord.objects.count() == 7
    return InvoiceRecordChain.objects.get()


def test_the_export_passes_verifactu_lint_without_an_error(chain_of_everything, tmp_path):
    path = tmp_path / "records.xml"
    call_command("export_invoice_records", str(path))

    result = lint(path)
    assert errors_of(result) == [] and result["code"] == 0, result
    root = ET.parse(path).getroot()  # noqa: S314 (our own file)
    kinds = [child.tag.split("}")[1] for wrapper in root.iter(f"{SFLR}RegistroFactura") for child in wrapper]
    assert kinds == ["RegistroAlta"] * 6 + ["RegistroAnulacion"]
    assert root.find(f"{SF}Cabecera/{SF}ObligadoEmision/{SF}NIF").text == "B12345674"
    hashes = [node.text for node in root.iter(f"{SF}Huella") if node.text and len(node.text) == 64]
    assert set(hashes) == set(InvoiceRecord.objects.values_list("hash", flat=True))


def test_verifactu_lint_sees_a_broken_chain_so_the_test_above_can_fail(chain_of_everything, tmp_path):
    path = tmp_path / "records.xml"
    call_command("export_invoice_records", str(path), "--issuer", "B12345674")
    text = path.read_text(encoding="utf-8")
    second = InvoiceRecord.objects.get(position=2)
    path.write_text(text.replace(f">{second.hash}<", ">" + "0" * 64 + "<", 1), encoding="utf-8")

    result = lint(path)
    assert result["code"] == 1
    assert {finding["regla"] for finding in errors_of(result)} >= {"RRSIF001"}


def test_more_than_a_thousand_records_are_written_as_blocks_of_the_schema(chain_of_everything, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "BLOCK", 4)
    path = tmp_path / "records.xml"
    call_command("export_invoice_records", str(path))
    root = ET.parse(path).getroot()  # noqa: S314 (our own file)
    assert root.tag == "RegistrosFacturacion"
    assert [len(block.findall(f"{SFLR}RegistroFactura")) for block in root] == [4, 3]
    assert errors_of(lint(path)) == []


def test_the_command_refuses_an_unknown_issuer_or_an_empty_database(tmp_path, db):
    with pytest.raises(CommandError, match="no invoice records yet"):
        call_command("export_invoice_records", str(tmp_path / "x.xml"))
    with pytest.raises(CommandError, match="no invoice records of the issuer"):
        call_command("export_invoice_records", str(tmp_path / "x.xml"), "--issuer", "A00000000")
    assert not (tmp_path / "x.xml").exists()
