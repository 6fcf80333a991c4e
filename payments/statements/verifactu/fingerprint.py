"""The "huella": the SHA-256 of a record's fields, as the AEAT specifies it. Framework-free.

Source: AEAT, "Detalle de las especificaciones técnicas para generación de la huella o hash de los
registros de facturación" (v0.1.2, 27 August 2024), developing article 13 of Orden HAC/1177/2024.
The input is ``name=value`` pairs in the fixed order below, joined with ``&`` (none after the last),
each value with its leading and trailing spaces removed, encoded as UTF-8; the output is the
SHA-256 in upper-case hexadecimal. A missing value (the previous hash of a chain's first record)
keeps its name and ``=``. The test vectors of the document's section 6 are in
tests/payments/statements/test_verifactu_fingerprint.py.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from decimal import Decimal

ALTA_FIELDS = (
    "IDEmisorFactura",
    "NumSerieFactura",
    "FechaExpedicionFactura",
    "TipoFactura",
    "CuotaTotal",
    "ImporteTotal",
    "Huella",
    "FechaHoraHusoGenRegistro",
)
ANULACION_FIELDS = (
    "IDEmisorFacturaAnulada",
    "NumSerieFacturaAnulada",
    "FechaExpedicionFacturaAnulada",
    "Huella",
    "FechaHoraHusoGenRegistro",
)


def canonical(names: tuple[str, ...], values: list[str]) -> str:
    """``name=value&name=value...`` in the given order, values trimmed."""
    if len(names) != len(values):
        raise ValueError(f"{len(names)} fields need {len(names)} values, got {len(values)}")
    return "&".join(f"{name}={(value or '').strip()}" for name, value in zip(names, values, strict=True))


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest().upper()


def alta(
    *,
    issuer: str,
    number: str,
    issue_date: str,
    invoice_type: str,
    total_tax: str,
    total: str,
    previous_hash: str,
    generated: str,
) -> str:
    """The huella of a registro de alta (every value as written in the record)."""
    return digest(
        canonical(ALTA_FIELDS, [issuer, number, issue_date, invoice_type, total_tax, total, previous_hash, generated])
    )


def anulacion(*, issuer: str, number: str, issue_date: str, previous_hash: str, generated: str) -> str:
    """The huella of a registro de anulación (the cancelled invoice's identity, as written in the record)."""
    return digest(canonical(ANULACION_FIELDS, [issuer, number, issue_date, previous_hash, generated]))


def date_text(day: date) -> str:
    """FechaExpedicionFactura and the QR's ``fecha``: dd-mm-yyyy."""
    return f"{day:%d-%m-%Y}"


def amount_text(amount: Decimal) -> str:
    """An amount as the record writes it: two decimals, a point, a minus sign when negative, never "-0.00"."""
    text = f"{amount.quantize(Decimal('0.01')):f}"
    return "0.00" if Decimal(text) == 0 else text


def moment_text(moment: datetime) -> str:
    """FechaHoraHusoGenRegistro: ISO 8601 to the second with its UTC offset (``2024-01-01T19:20:30+01:00``)."""
    if moment.tzinfo is None:
        raise ValueError("the generation time of a record needs its time zone")
    return moment.replace(microsecond=0).isoformat()
