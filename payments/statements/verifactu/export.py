"""An issuer's chain of invoice records as the AEAT's XML (``manage.py export_invoice_records``).

The elements, their order and their namespaces are those of the AEAT's schemas ``SuministroLR.xsd``
(``RegFactuSistemaFacturacion``: a ``Cabecera`` naming the issuer, then ``RegistroFactura`` elements,
1,000 at most) and ``SuministroInformacion.xsd`` (``RegistroAlta``, ``RegistroAnulacion``). A chain of
more than 1,000 records is written as consecutive ``RegFactuSistemaFacturacion`` blocks, in chain order,
inside one ``RegistrosFacturacion`` element (ours: the AEAT defines no file for a whole chain). Every
value comes from the stored record, never from today's settings. Nothing is signed: in VERI*FACTU mode
the records are sent to the AEAT, which needs no signature on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO
from xml.etree import ElementTree as ET

from payments.statements.models import InvoiceRecord, InvoiceRecordChain
from payments.statements.verifactu.fingerprint import amount_text, date_text

SF = "https://www2.agenciatributaria.gob.es/static_files/common/internet/dep/aplicaciones/es/aeat/tike/cont/ws/SuministroInformacion.xsd"
SFLR = "https://www2.agenciatributaria.gob.es/static_files/common/internet/dep/aplicaciones/es/aeat/tike/cont/ws/SuministroLR.xsd"
BLOCK = 1000  # RegistroFactura elements per RegFactuSistemaFacturacion (the schema's maxOccurs)
VERSION = "1.0"  # IDVersion
SHA256 = "01"  # TipoHuella (list L12)

ET.register_namespace("sf", SF)
ET.register_namespace("sfLR", SFLR)


def write(chain: InvoiceRecordChain, out: IO[bytes]) -> int:
    """Write the chain's records to ``out`` (UTF-8); returns how many were written."""
    records = InvoiceRecord.objects.filter(chain=chain).order_by("position")
    total = records.count()
    name = _issuer_name(chain)
    out.write(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    wrapped = total > BLOCK
    if wrapped:
        out.write(b"<RegistrosFacturacion>\n")
    for block in _blocks(records.iterator(chunk_size=BLOCK)):
        out.write(ET.tostring(_document(chain.issuer_tax_id, name, block), encoding="utf-8", xml_declaration=False))
        out.write(b"\n")
    if wrapped:
        out.write(b"</RegistrosFacturacion>\n")
    return total


def _blocks(records: Iterator[InvoiceRecord]) -> Iterator[list[InvoiceRecord]]:
    block: list[InvoiceRecord] = []
    for record in records:
        block.append(record)
        if len(block) == BLOCK:
            yield block
            block = []
    if block:
        yield block


def _issuer_name(chain: InvoiceRecordChain) -> str:
    """The issuer's name as its newest alta gave it (the Cabecera's ObligadoEmision)."""
    newest = (
        InvoiceRecord.objects.filter(chain=chain, kind=InvoiceRecord.Kind.ALTA).order_by("-position").only("content")
    ).first()
    return newest.content.get("issuer_name", "") if newest else ""


def _document(tax_id: str, name: str, records: list[InvoiceRecord]) -> ET.Element:
    root = ET.Element(f"{{{SFLR}}}RegFactuSistemaFacturacion")
    header = _sf(root, "Cabecera")
    issuer = _sf(header, "ObligadoEmision")
    _sf(issuer, "NombreRazon", name)
    _sf(issuer, "NIF", tax_id)
    for record in records:
        wrapper = ET.SubElement(root, f"{{{SFLR}}}RegistroFactura")
        if record.kind == InvoiceRecord.Kind.ALTA:
            _alta(wrapper, record)
        else:
            _anulacion(wrapper, record)
    return root


def _alta(parent: ET.Element, record: InvoiceRecord) -> None:
    content = record.content
    node = _sf(parent, "RegistroAlta")
    _sf(node, "IDVersion", VERSION)
    identity = _sf(node, "IDFactura")
    _sf(identity, "IDEmisorFactura", record.issuer_tax_id)
    _sf(identity, "NumSerieFactura", record.invoice_number)
    _sf(identity, "FechaExpedicionFactura", date_text(record.invoice_date))
    _sf(node, "NombreRazonEmisor", content.get("issuer_name", ""))
    _sf(node, "TipoFactura", record.invoice_type)
    if corrects := content.get("corrects"):
        _sf(node, "TipoRectificativa", content.get("corrective_type", "I"))
        corrected = _sf(_sf(node, "FacturasRectificadas"), "IDFacturaRectificada")
        _sf(corrected, "IDEmisorFactura", corrects["issuer_tax_id"])
        _sf(corrected, "NumSerieFactura", corrects["number"])
        _sf(corrected, "FechaExpedicionFactura", corrects["date"])
    _sf(node, "DescripcionOperacion", content.get("description", ""))
    if recipient := content.get("recipient"):
        person = _sf(_sf(node, "Destinatarios"), "IDDestinatario")
        _sf(person, "NombreRazon", recipient["name"])
        _sf(person, "NIF", recipient["tax_id"])
    breakdown = _sf(node, "Desglose")
    for item in content.get("breakdown", []):
        detail = _sf(breakdown, "DetalleDesglose")
        _sf(detail, "Impuesto", item["tax_code"])
        _sf(detail, "ClaveRegimen", item["regime"])
        _sf(detail, "CalificacionOperacion", item["qualification"])
        _sf(detail, "TipoImpositivo", item["rate"])
        _sf(detail, "BaseImponibleOimporteNoSujeto", item["base"])
        _sf(detail, "CuotaRepercutida", item["tax"])
    _sf(node, "CuotaTotal", amount_text(record.total_tax))
    _sf(node, "ImporteTotal", amount_text(record.total))
    _tail(node, record)


def _anulacion(parent: ET.Element, record: InvoiceRecord) -> None:
    node = _sf(parent, "RegistroAnulacion")
    _sf(node, "IDVersion", VERSION)
    identity = _sf(node, "IDFactura")
    _sf(identity, "IDEmisorFacturaAnulada", record.issuer_tax_id)
    _sf(identity, "NumSerieFacturaAnulada", record.invoice_number)
    _sf(identity, "FechaExpedicionFacturaAnulada", date_text(record.invoice_date))
    _tail(node, record)


def _tail(node: ET.Element, record: InvoiceRecord) -> None:
    """What both kinds end with: the link to the previous record, the system, the time, the hash."""
    link = _sf(node, "Encadenamiento")
    if record.position == 1:
        _sf(link, "PrimerRegistro", "S")
    else:
        previous = _sf(link, "RegistroAnterior")
        _sf(previous, "IDEmisorFactura", record.previous_issuer_tax_id)
        _sf(previous, "NumSerieFactura", record.previous_invoice_number)
        _sf(previous, "FechaExpedicionFactura", date_text(record.previous_invoice_date))
        _sf(previous, "Huella", record.previous_hash)
    system = record.content.get("system", {})
    block = _sf(node, "SistemaInformatico")
    _sf(block, "NombreRazon", system.get("producer_name", ""))
    _sf(block, "NIF", system.get("producer_tax_id", ""))
    _sf(block, "NombreSistemaInformatico", system.get("name", ""))
    _sf(block, "IdSistemaInformatico", system.get("id", ""))
    _sf(block, "Version", system.get("version", ""))
    _sf(block, "NumeroInstalacion", system.get("installation", ""))
    _sf(block, "TipoUsoPosibleSoloVerifactu", system.get("only_verifactu", "S"))
    _sf(block, "TipoUsoPosibleMultiOT", system.get("multiple_issuers_possible", "N"))
    _sf(block, "IndicadorMultiplesOT", system.get("multiple_issuers", "N"))
    _sf(node, "FechaHoraHusoGenRegistro", record.generated_text)
    _sf(node, "TipoHuella", SHA256)
    _sf(node, "Huella", record.hash)


def _sf(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, f"{{{SF}}}{tag}")
    if text is not None:
        element.text = text
    return element


def block(chain: InvoiceRecordChain, records: list[InvoiceRecord]) -> ET.Element:
    """One ``RegFactuSistemaFacturacion`` of at most ``BLOCK`` of the chain's records: what a submission to the AEAT
    carries (payments.statements.verifactu.sending)."""
    if not 0 < len(records) <= BLOCK:
        raise ValueError(f"a block holds 1 to {BLOCK} records, not {len(records)}")
    return _document(chain.issuer_tax_id, _issuer_name(chain), records)
