"""A statement as people and programs read it: the HTML page, the PDF (WeasyPrint, same template), CSV and JSON.

The page and the PDF include one template, ``statements/_document.html``, which opens with the tax QR
of VERI*FACTU (payments.statements.verifactu.qr) where the statement has a record; the PDF's own template
adds the print stylesheet (``static/css/statement-pdf.css``, handed to WeasyPrint directly: the
Content-Security-Policy of the pages never meets it). Texts are rendered in the statement's stored
language. Fonts: the system's (DejaVu Sans from Debian's ``fonts-dejavu-core``, see the README);
WeasyPrint embeds the glyphs it uses, so the PDF's text can be extracted and searched.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from functools import cache

from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.utils import translation

from lib.money import exact_places, format_money
from lib.periods import local_date
from payments.networks import explorer_url
from payments.statements import spain
from payments.statements.models import Statement
from payments.statements.verifactu.qr import statement_qr

PDF_STYLESHEET = "css/statement-pdf.css"
_INSTANT = timedelta(microseconds=1)
CSV_HEADER = [
    "number",
    "issue date",
    "period start",
    "period end",
    "line",
    "kind",
    "key",
    "quantity",
    "unit",
    "unit price (EUR)",
    "tax rate (%)",
    "tax base (EUR)",
    "exact (EUR)",
    "amount (EUR)",
]


def document_context(statement: Statement) -> dict:
    """What ``statements/_document.html`` shows: the statement, its lines and payments, the document it corrects."""
    lines = list(statement.lines.order_by("position"))
    payments = list(statement.payments.order_by("paid_at", "pk"))
    for payment in payments:
        payment.explorer_url = explorer_url(payment.txid)
    withdrawals = list(statement.withdrawals.order_by("sent_at", "pk"))
    for withdrawal in withdrawals:
        withdrawal.explorer_url = explorer_url(withdrawal.txid)
    return {
        "statement": statement,
        "lines": lines,
        "charges": [line for line in lines if line.kind in ("energy", "standing", "power", "rental")],
        "taxes": [line for line in lines if line.kind == "tax"],
        "rounding": [line for line in lines if line.kind == "rounding"],
        "payments": payments,
        "withdrawals": withdrawals,
        "original": statement.corrects,
        "tz": statement.timezone,
        "period_first": local_date(statement.period_start, statement.timezone),
        "period_last": local_date(statement.period_end - _INSTANT, statement.timezone),
        "month_total": statement.settled_eur + statement.unsettled_eur,
        "balance_price": None
        if statement.balance_bsv_eur is None
        else format_money(statement.balance_bsv_eur, "EUR", places=exact_places(statement.balance_bsv_eur)),
        "tax_qr": statement_qr(statement),  # VERI*FACTU's QR, from the statement's registro de alta
        # A 2.0TD supply's bill content as stored at issue (payments.statements.spain), or None.
        "bill": spain.bill_context(statement.bill, statement.currency),
        "for_pdf": False,
    }


def pdf_bytes(statement: Statement) -> bytes:
    """The statement as a PDF, in its own language."""
    return pdf_document(statement).write_pdf()


def pdf_document(statement: Statement):
    """The statement laid out by WeasyPrint (a ``weasyprint.Document``): its pages and boxes, before the PDF."""
    # WeasyPrint loads Pango through cffi on import (a few hundred ms): only the processes that render pay it.
    from weasyprint import HTML

    with translation.override(statement.language):
        html = render_to_string("statements/pdf.html", {**document_context(statement), "for_pdf": True})
    return HTML(string=html).render(stylesheets=[_stylesheet()])


@cache
def _stylesheet():
    from weasyprint import CSS

    path = finders.find(PDF_STYLESHEET)
    if path is None:
        raise FileNotFoundError(f"static file {PDF_STYLESHEET} not found")
    with open(path, encoding="utf-8") as css:
        return CSS(string=css.read())


def csv_rows(statement: Statement) -> list[list]:
    """The statement's lines as CSV rows, the header first; amounts exact as stored, never formatted."""
    rows: list[list] = [CSV_HEADER]
    with translation.override(statement.language):
        for line in statement.lines.order_by("position"):
            rows.append(
                [
                    statement.code,
                    statement.issue_date.isoformat(),
                    statement.period_start.isoformat(),
                    statement.period_end.isoformat(),
                    line.label,
                    line.kind,
                    line.key,
                    _text(line.quantity),
                    line.unit,
                    _text(line.unit_price),
                    _text(line.tax_percent),
                    _text(line.base_eur),
                    _text(line.exact_eur),
                    _text(line.amount_eur),
                ]
            )
    return rows


def as_json(statement: Statement) -> dict:
    """The statement for programs: numbers as decimal strings (never floats), times in ISO 8601 UTC."""
    with translation.override(statement.language):
        return {
            "number": statement.code,
            "kind": statement.kind,
            "title": statement.title,
            "revision": statement.revision,
            "corrects": statement.corrects.code if statement.corrects_id else None,
            # A factura rectificativa's type (R1-R4), method (I, S) and cause in words; null on a statement.
            "rectification": {
                "type": statement.rectification_type,
                "method": statement.rectification_method,
                "reason": statement.rectification_reason_text,
                "corrects_issue_date": statement.corrects.issue_date.isoformat(),
            }
            if statement.is_rectificativa and statement.corrects_id
            else None,
            "issue_date": statement.issue_date.isoformat(),
            "issued_at": statement.issued_at.isoformat(),
            "period": {
                "month": f"{statement.month:%Y-%m}",
                "start": statement.period_start.isoformat(),
                "end": statement.period_end.isoformat(),
                "timezone": statement.timezone,
            },
            "currency": statement.currency,
            "issuer": statement.issuer,
            "customer": statement.customer,
            "lines": [
                {
                    "position": line.position,
                    "kind": line.kind,
                    "key": line.key,
                    "label": line.label,
                    "quantity": _text(line.quantity),
                    "unit": line.unit,
                    "unit_price_eur": _text(line.unit_price),
                    "tax_rate_percent": _text(line.tax_percent),
                    "tax_base_eur": _text(line.base_eur),
                    "exact_eur": _text(line.exact_eur),
                    "amount_eur": _text(line.amount_eur),
                }
                for line in statement.lines.order_by("position")
            ],
            "energy_kwh": _text(statement.energy_kwh),
            "net_eur": _text(statement.net_eur),
            "tax_eur": _text(statement.tax_eur),
            "total_eur": _text(statement.total_eur),
            "settled": {
                "eur": _text(statement.settled_eur),
                "unsettled_eur": _text(statement.unsettled_eur),
                "settlements": statement.settlement_count,
                "satoshis": statement.settled_satoshis,
                "payments": [
                    {"txid": p.txid, "paid_at": p.paid_at.isoformat(), "eur": _text(p.eur), "satoshis": p.satoshis}
                    for p in statement.payments.order_by("paid_at", "pk")
                ],
            },
            "withdrawals": [
                {
                    "txid": w.txid,
                    "address": w.address,
                    "sent_at": w.sent_at.isoformat(),
                    "satoshis": w.satoshis,
                    "fee_satoshis": w.fee_satoshis,
                }
                for w in statement.withdrawals.order_by("sent_at", "pk")
            ],
            # A 2.0TD supply's bill content as stored at issue (docs/spain.md); null for other statements.
            "spanish_bill": statement.bill or None,
            "balance": None
            if statement.balance_at is None
            else {
                "at": statement.balance_at.isoformat(),
                "satoshis": statement.balance_satoshis,
                "eur": _text(statement.balance_eur),
                "bsv_eur": _text(statement.balance_bsv_eur),
            },
        }


def total_text(statement: Statement) -> str:
    return format_money(statement.total_eur, statement.currency)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"
