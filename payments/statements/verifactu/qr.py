"""The tax QR every statement carries in VERI*FACTU mode: a link to the AEAT's validation service (docs/spain.md).

Source: AEAT, "Detalle de las especificaciones técnicas del código QR de la factura" and article 21 of
Orden HAC/1177/2024: the URL holds exactly ``nif`` (the issuer), ``numserie`` (series and number),
``fecha`` (issue date, dd-mm-yyyy) and ``importe`` (the total, a point before two decimals), each
URL-encoded as UTF-8; the code uses error correction M (payments.qr) and is printed 30 to 40 mm wide
with "QR tributario:" above it and, in VERI*FACTU mode, "VERI*FACTU" below it, at the top of the
document's first page.
"""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

from django.conf import settings

from payments.qr import qr_svg
from payments.statements.models import InvoiceRecord, Statement
from payments.statements.verifactu.fingerprint import amount_text, date_text

SERVICE = {
    "test": "https://prewww2.aeat.es/wlpl/TIKE-CONT/ValidarQR",
    "production": "https://www2.agenciatributaria.gob.es/wlpl/TIKE-CONT/ValidarQR",
}
TITLE = "QR tributario:"  # the legends are the Orden's words, in Spanish whatever the reader's language
LEGEND = "VERI*FACTU"
SYMBOL_MM = Decimal("32")  # the printed code, quiet zone not counted: inside the 30-40 mm the Orden asks for


def validation_url(*, issuer: str, number: str, issue_date: str, total: str) -> str:
    query = urlencode({"nif": issuer, "numserie": number, "fecha": issue_date, "importe": total})
    return f"{SERVICE[settings.VERIFACTU_ENVIRONMENT]}?{query}"


def record_url(record: InvoiceRecord) -> str:
    return validation_url(
        issuer=record.issuer_tax_id,
        number=record.invoice_number,
        issue_date=date_text(record.invoice_date),
        total=amount_text(record.total),
    )


def statement_qr(statement: Statement) -> dict | None:
    """The QR of a statement (its URL and SVG) from its registro de alta; None for a statement without one
    (issued before records were kept, or under another mode)."""
    record = InvoiceRecord.objects.filter(statement=statement, kind=InvoiceRecord.Kind.ALTA).first()
    if record is None:
        return None
    url = record_url(record)
    svg = qr_svg(url, symbol_mm=SYMBOL_MM)
    cancelled = InvoiceRecord.objects.filter(statement=statement, kind=InvoiceRecord.Kind.ANULACION).exists()
    return {"url": url, "svg": svg, "cancelled": cancelled, "title": TITLE, "legend": LEGEND}
