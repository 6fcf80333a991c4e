"""Every statement carries VERI*FACTU's tax QR on its page and in its PDF: read back from the printed PDF
(rasterised by poppler's ``pdftoppm``, decoded by zbar's ``zbarimg``), it is the AEAT validation URL of this
statement, between 30 and 40 mm wide, with "QR tributario:" above it and "VERI*FACTU" below it."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse
from pypdf import PdfReader

from payments.statements import rendering
from payments.statements.models import Statement
from payments.statements.verifactu import qr, records
from tests.payments.statements import verifactukit

needs_tools = pytest.mark.skipif(
    not (shutil.which("pdftoppm") and shutil.which("zbarimg")),
    reason="poppler-utils and zbar-tools (README, system packages) read the printed QR",
)
MM_PER_CSS_PX = Decimal("25.4") / 96


@pytest.fixture
def statement(make_household, make_meter) -> Statement:
    (statement,) = verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
    return statement


def decode_printed_qr(pdf: bytes, tmp_path) -> list[str]:
    (tmp_path / "statement.pdf").write_bytes(pdf)
    subprocess.run(
        ["pdftoppm", "-r", "200", "-f", "1", "-l", "1", "-png", "statement.pdf", "page"],
        cwd=tmp_path,
        check=True,
        timeout=60,
    )
    (page,) = tmp_path.glob("page*.png")
    run = subprocess.run(["zbarimg", "--quiet", "--raw", str(page)], capture_output=True, text=True, timeout=60)
    return run.stdout.split()


def test_the_validation_url_follows_the_aeat_example():
    """AEAT, "Detalle de las especificaciones técnicas del código QR de la factura", worked example: NIF
    89890001K, invoice 12345678&G33 of 1 January 2024, total 241.4: the "&" of the number is URL-encoded."""
    assert qr.validation_url(issuer="89890001K", number="12345678&G33", issue_date="01-01-2024", total="241.4") == (
        "https://prewww2.aeat.es/wlpl/TIKE-CONT/ValidarQR?nif=89890001K&numserie=12345678%26G33"
        "&fecha=01-01-2024&importe=241.4"
    )


def test_production_points_at_the_production_service(settings):
    settings.VERIFACTU_ENVIRONMENT = "production"
    url = qr.validation_url(issuer="89890001K", number="A-1", issue_date="01-01-2024", total="1.00")
    assert url.startswith("https://www2.agenciatributaria.gob.es/wlpl/TIKE-CONT/ValidarQR?")


@needs_tools
def test_the_printed_qr_decodes_to_this_statements_validation_url(statement, tmp_path):
    (decoded,) = decode_printed_qr(rendering.pdf_bytes(statement), tmp_path)

    parts = urlsplit(decoded)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://prewww2.aeat.es/wlpl/TIKE-CONT/ValidarQR"
    assert parse_qs(parts.query) == {
        "nif": ["B12345674"],
        "numserie": [statement.code],
        "fecha": [statement.issue_date.strftime("%d-%m-%Y")],
        "importe": [f"{statement.total_eur:.2f}"],
    }
    assert statement.total_eur == Decimal("0.30")


def test_the_printed_qr_measures_30_to_40_mm_between_its_two_legends(statement):
    document = rendering.pdf_document(statement)
    boxes = list(_walk(document.pages[0]._page_box))
    (svg,) = [box for box in boxes if str(getattr(box, "element_tag", "")).endswith("svg")]
    side_mm = Decimal(str(svg.width)) * MM_PER_CSS_PX
    modules = int(re.search(r'viewBox="0 0 (\d+)', statement_svg(statement)).group(1))
    symbol_mm = side_mm * (modules - 8) / modules  # the quiet zone (4 modules a side) is not the code
    assert Decimal("30") <= symbol_mm <= Decimal("40"), symbol_mm
    assert svg.width == svg.height
    texts = [box.text for box in boxes if hasattr(box, "text") and box.text.strip()]
    assert texts[:2] == ["QR tributario:", "VERI*FACTU"]  # before anything else on the first page
    title = next(box for box in boxes if getattr(box, "text", "") == "QR tributario:")
    legend = next(box for box in boxes if getattr(box, "text", "") == "VERI*FACTU")
    assert title.position_y < svg.position_y < legend.position_y


def test_the_page_shows_the_qr_as_a_link_with_its_legends(client, statement):
    client.force_login(statement.household.user)
    body = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    section = body[body.index('id="statement-tax-qr"') : body.index('id="statement-issuer"')]
    assert section.index("QR tributario:") < section.index("<svg") < section.index("VERI*FACTU")
    assert 'href="{}"'.format(qr.statement_qr(statement)["url"].replace("&", "&amp;")) in section
    assert body.index('id="statement-tax-qr"') < body.index('id="statement-number"')  # before the content
    assert 'id="statement-cancelled"' not in body


def test_a_cancelled_statement_says_so_beside_its_qr(client, statement):
    records.cancel(statement, reason="issued in error")
    client.force_login(statement.household.user)
    body = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    assert 'id="statement-cancelled"' in body


def test_a_statement_issued_without_records_has_no_qr(client, make_household, make_meter, settings):
    settings.INVOICE_RECORDS_MODE = "sii"  # no records kept (a mode the system checks refuse at start)
    (statement,) = verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
    assert qr.statement_qr(statement) is None
    client.force_login(statement.household.user)
    body = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    assert "statement-tax-qr" not in body and "QR tributario" not in body


def statement_svg(statement: Statement) -> str:
    return qr.statement_qr(statement)["svg"]


def _walk(box):
    yield box
    for child in getattr(box, "children", None) or []:
        yield from _walk(child)


def test_the_customers_tax_id_and_supply_point_are_on_the_document_as_snapshotted(
    client, make_household, make_meter, monkeypatch
):
    homes = verifactukit.town(make_household, make_meter, 1)
    verifactukit.identify(monkeypatch, homes, "12345678Z", cups="ES0021000000000001JN")
    (statement,) = verifactukit.issue(homes)
    assert (statement.customer["tax_id"], statement.customer["cups"]) == ("12345678Z", "ES0021000000000001JN")
    client.force_login(statement.household.user)
    body = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    assert '<span id="statement-customer-tax-id">12345678Z</span>' in body
    assert '<span id="statement-customer-cups">ES0021000000000001JN</span>' in body
    pdf = PdfReader(io.BytesIO(rendering.pdf_bytes(statement)))
    assert "12345678Z" in pdf.pages[0].extract_text()
