"""A tax rate corrected after issue: VAT charged at 10% on October 2026 where 21% was due. An explicit, audited
staff correction: a correcting rule for those days, correction lines in the ledger (never an edit of an issued
line or of the old rule), and an R1 factura rectificativa by differences that the next settlement collects.

The month, worked by hand: a 2.0TD supply of 4.6 kW in P1 and P2, no meter, so its bill is the power term alone:
31 days x (4.6 x 0.073777 + 4.6 x 0.001911 = 0.348165) = 10.793115 EUR. The electricity tax 5.11269632% of it is
0.551819193418368; VAT's base is both, 11.344934193418368 (11.34).

- as issued, VAT 10%: 1.1344934193418368 (1.13); the ledger's total 12.4794276127602048, 12.48 (a rounding line
  of 0.01 over 10.79 + 0.55 + 1.13);
- corrected, VAT 21%: 2.38243618061785728 (2.38); total 13.7273703740... , 13.73;
- the rectificativa: IVA 10% base -11.34, -1.13; IVA 21% base 11.34, +2.38; total 13.73 - 12.48 = 1.25 (the
  exact difference is 11.344934193418368 x 0.11 = 1.24794276127602048).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from meters import tax_corrections
from meters.models import HourlyUsage, Household, TaxRule
from meters.tax_corrections import CorrectionRefused
from payments.figures import line_amount
from payments.statements import corrections
from payments.statements.models import InvoiceRecord, Statement
from payments.statements.verifactu.records import verify
from tests.meters.taxkit import IEE, rule
from tests.payments.statements import kit
from tests.payments.statements.test_spanish_taxes import october_household, october_statement
from tests.payments.statements.test_verifactu_export import errors_of, lint

LATER = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)
REASON = "IVA aplicado al 10 %; correspondía el 21 %"


@pytest.fixture
def wrong_vat():
    rule("iee", IEE, kinds=["energy", "power"], name="Impuesto especial sobre la electricidad")
    return rule("iva", "0.10", compound=True, kinds=["energy", "power", "rental"], name="IVA 10%")


@pytest.fixture
def issued_at_ten(make_household, wrong_vat, settings):
    settings.STATEMENT_ISSUER_TAX_ID = "B12345674"
    household = october_household(make_household, {"P1": "4.6", "P2": "4.6"})
    Household.objects.filter(pk=household.pk).update(tax_id="12345678Z")  # an F1, so its correction is an R1
    statement, lines = october_statement(household)
    assert lines["power"].exact_eur == Decimal("10.793115")
    assert lines["IVA 10%"].base_eur == Decimal("11.34") and lines["IVA 10%"].amount_eur == Decimal("1.13")
    assert statement.total_eur == Decimal("12.48")
    return household, statement


def ledger_lines(household):
    return list(HourlyUsage.objects.filter(household=household).order_by("pk").values_list("pk", "cost_eur", "tax_eur"))


def test_vat_corrected_from_10_to_21_percent_after_issue_brings_an_r1_by_differences(issued_at_ten, wrong_vat):
    household, statement = issued_at_ten
    before = ledger_lines(household)

    correction, notes = corrections.correct_tax_rate(
        wrong_vat, Decimal("0.21"), date(2026, 10, 1), date(2026, 10, 31), reason=REASON, name="IVA 21%", now=LATER
    )

    (note,) = notes
    assert (note.kind, note.corrects_id, note.rectification_type, note.rectification_method) == (
        "corrective",
        statement.pk,
        "R1",
        "I",
    )
    assert note.rectification_reason == REASON
    assert note.code == "EPR-2026-000001"
    lines = {line.name or line.kind: line for line in note.lines.all()}
    assert set(lines) == {"IVA 10%", "IVA 21%"}  # only what changed: the power term and the electricity tax did not
    assert (lines["IVA 10%"].base_eur, lines["IVA 10%"].amount_eur) == (Decimal("-11.34"), Decimal("-1.13"))
    assert (lines["IVA 21%"].base_eur, lines["IVA 21%"].amount_eur) == (Decimal("11.34"), Decimal("2.38"))
    assert note.total_eur == Decimal("1.25") and note.tax_eur == Decimal("1.25") and note.net_eur == 0
    # The month's documents together are the ledger now, to the cent: 12.48 + 1.25 = 13.73.
    assert statement.total_eur + note.total_eur == Decimal("13.73")
    assert kit.total_of(kit.ledger_sums(household, kit.OCTOBER_START, kit.OCTOBER_END)) == Decimal("13.73")

    # Nothing issued or billed was edited: the statement, the old rule, every earlier ledger line.
    assert Statement.objects.get(pk=statement.pk).total_eur == Decimal("12.48")
    assert TaxRule.objects.get(pk=wrong_vat.pk).rate == Decimal("0.1000000000")
    assert ledger_lines(household)[: len(before)] == before
    assert (correction.replaces_id, correction.rate, correction.valid_from, correction.valid_to) == (
        wrong_vat.pk,
        Decimal("0.21"),
        date(2026, 10, 1),
        date(2026, 10, 31),
    )

    # The correction lines: a pair per hour (744 power hours + the 25-hour day's extra one), costs adding up to
    # nothing and taxes to the difference, unsettled: the next hourly settlement collects it.
    retax = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.RETAX)
    assert retax.count() == 2 * 745
    assert sum(line.cost_eur for line in retax) == 0
    owed = retax.aggregate(owed=Sum(line_amount()))["owed"]  # what settlement sums: cost + tax
    assert abs(owed - Decimal("1.24794276127602048")) < Decimal("0.0004")  # at most half a micro-euro an hour
    assert all(line.settled_at is None for line in retax)

    # Its VERI*FACTU alta is an R1 by differences naming the statement, chained after it.
    record = InvoiceRecord.objects.get(statement=note)
    original = InvoiceRecord.objects.get(statement=statement)
    assert (record.invoice_type, record.content["corrective_type"]) == ("R1", "I")
    assert record.content["corrects"]["number"] == statement.code
    assert record.content["corrects"]["date"] == statement.issue_date.strftime("%d-%m-%Y")
    assert record.position == original.position + 1 and record.previous_hash == original.hash
    assert verify(record.chain) == []

    # Audited on the rule it corrects.
    entry = LogEntry.objects.get_for_object(wrong_vat).filter(additional_data__correction_rule=correction.pk).get()
    assert "Rate corrected to 0.21 from 2026-10-01 to 2026-10-31" in entry.changes["staff action"][1]


def test_run_again_finds_nothing_left_and_issues_nothing_twice(issued_at_ten, wrong_vat):
    household, _ = issued_at_ten
    correction, _ = corrections.correct_tax_rate(
        wrong_vat, Decimal("0.21"), date(2026, 10, 1), date(2026, 10, 31), reason=REASON, now=LATER
    )
    lines = HourlyUsage.objects.filter(household=household).count()

    assert corrections.retax_and_rectify(correction, now=LATER) == []
    assert HourlyUsage.objects.filter(household=household).count() == lines
    # The daily job sees the month's documents equal to the ledger: nothing to correct.
    assert corrections.check(LATER)["corrected"] == 0


def test_the_daily_job_types_the_note_r1_when_it_comes_before_the_staff_step(issued_at_ten, wrong_vat):
    household, statement = issued_at_ten
    correction = tax_corrections.correct_rate(
        wrong_vat, Decimal("0.21"), date(2026, 10, 1), date(2026, 10, 31), reason=REASON, now=LATER
    )
    tax_corrections.retax(correction)  # then the process stopped; the daily job runs first

    assert corrections.check(LATER)["corrected"] == 1
    note = Statement.objects.get(household=household, revision=1)
    assert (note.rectification_type, note.rectification_reason, note.total_eur) == ("R1", REASON, Decimal("1.25"))
    assert note.corrects_id == statement.pk


def test_refusals_write_nothing(issued_at_ten, wrong_vat):
    rules = TaxRule.objects.count()
    cases = [
        (Decimal("0.10"), date(2026, 10, 1), date(2026, 10, 31), REASON, "already has the rate"),
        (Decimal("1.5"), date(2026, 10, 1), date(2026, 10, 31), REASON, "fraction"),
        (Decimal("0.21"), date(2026, 10, 31), date(2026, 10, 1), REASON, "before the first"),
        (Decimal("0.21"), date(2019, 12, 1), date(2026, 10, 31), REASON, "does not apply"),
        (Decimal("0.21"), date(2026, 10, 1), date(2026, 11, 30), REASON, "have not begun"),
        (Decimal("0.21"), date(2026, 10, 1), date(2026, 10, 31), "  ", "Say why"),
    ]
    for rate, first, last, reason, message in cases:
        with pytest.raises(CorrectionRefused, match=message):
            corrections.correct_tax_rate(wrong_vat, rate, first, last, reason=reason, now=LATER)
    assert TaxRule.objects.count() == rules
    assert not Statement.objects.filter(kind="corrective").exists()


def test_the_command_corrects_and_says_what_it_issued(issued_at_ten, wrong_vat, capsys, admin_user):
    _, statement = issued_at_ten
    call_command(
        "correct_tax_rate",
        str(wrong_vat.pk),
        "--rate=0.21",
        "--from=2026-10-01",
        "--to=2026-10-31",
        "--name=IVA 21%",
        f"--reason={REASON}",
        f"--by={admin_user.get_username()}",
    )
    out = capsys.readouterr().out
    assert f"rectifying {statement.code}: 1.25 EUR" in out and "EPR-2026-000001 (R1" in out
    note = Statement.objects.get(corrects=statement)
    assert note.issued_by == admin_user
    with pytest.raises(CommandError, match="already has a correction"):
        call_command(
            "correct_tax_rate", str(wrong_vat.pk), "--rate=0.21", "--from=2026-10-05", "--to=2026-10-06", "--reason=x"
        )


def test_the_export_with_the_r1_passes_verifactu_lint(issued_at_ten, wrong_vat, tmp_path):
    corrections.correct_tax_rate(
        wrong_vat, Decimal("0.21"), date(2026, 10, 1), date(2026, 10, 31), reason=REASON, name="IVA 21%", now=LATER
    )
    path = tmp_path / "records.xml"
    call_command("export_invoice_records", str(path))

    result = lint(path)
    assert errors_of(result) == [] and result["code"] == 0
    text = path.read_text()
    assert "<sf:TipoFactura>R1</sf:TipoFactura>" in text and "<sf:TipoRectificativa>I</sf:TipoRectificativa>" in text
