"""The huella is the AEAT's, byte for byte: the three worked examples the AEAT publishes.

Source of every vector below: AEAT, "Detalle de las especificaciones técnicas para generación de la
huella o hash de los registros de facturación", version 0.1.2 of 27 August 2024, section 6 (the first
registro de alta, the second chained to it, and the anulación of the second). The same three
vectors are run by the independent checker verifactu-lint (its README, "Sobre qué se apoya") and
quoted in the README of the .NET library mdiago/VeriFactu (example 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from payments.statements.verifactu import fingerprint

FIRST = "3C464DAF61ACB827C65FDA19F352A4E3BDC2C640E9E9FC4CC058073F38F12F60"
SECOND = "F7B94CFD8924EDFF273501B01EE5153E4CE8F259766F88CF6ACB8935802A2B97"
CANCELLED = "177547C0D57AC74748561D054A9CEC14B4C4EA23D1BEFD6F2E69E3A388F90C68"


def test_the_aeat_first_alta_example():
    values = ["89890001K", "12345678/G33", "01-01-2024", "F1", "12.35", "123.45", "", "2024-01-01T19:20:30+01:00"]
    assert fingerprint.canonical(fingerprint.ALTA_FIELDS, values) == (
        "IDEmisorFactura=89890001K&NumSerieFactura=12345678/G33&FechaExpedicionFactura=01-01-2024"
        "&TipoFactura=F1&CuotaTotal=12.35&ImporteTotal=123.45&Huella="
        "&FechaHoraHusoGenRegistro=2024-01-01T19:20:30+01:00"
    )
    assert (
        fingerprint.alta(
            issuer="89890001K",
            number="12345678/G33",
            issue_date="01-01-2024",
            invoice_type="F1",
            total_tax="12.35",
            total="123.45",
            previous_hash="",
            generated="2024-01-01T19:20:30+01:00",
        )
        == FIRST
    )


def test_the_aeat_second_alta_example_chained_to_the_first():
    assert (
        fingerprint.alta(
            issuer="89890001K",
            number="12345679/G34",
            issue_date="01-01-2024",
            invoice_type="F1",
            total_tax="12.35",
            total="123.45",
            previous_hash=FIRST,
            generated="2024-01-01T19:20:35+01:00",
        )
        == SECOND
    )


def test_the_aeat_anulacion_example_chained_to_the_second():
    assert (
        fingerprint.anulacion(
            issuer="89890001K",
            number="12345679/G34",
            issue_date="01-01-2024",
            previous_hash=SECOND,
            generated="2024-01-01T19:20:40+01:00",
        )
        == CANCELLED
    )


def test_values_are_trimmed_but_inner_spaces_kept():
    """The specification's own example writes "  12345678 / G33  ": the hash sees "12345678 / G33"."""
    spaced = fingerprint.canonical(fingerprint.ANULACION_FIELDS, ["  89890001K ", "  12345678 / G33  ", "x", "", "y"])
    assert "NumSerieFacturaAnulada=12345678 / G33&" in spaced
    assert spaced.startswith("IDEmisorFacturaAnulada=89890001K&")


def test_one_value_changed_changes_the_hash():
    base = dict(
        issuer="89890001K",
        number="12345678/G33",
        issue_date="01-01-2024",
        invoice_type="F1",
        total_tax="12.35",
        total="123.45",
        previous_hash="",
        generated="2024-01-01T19:20:30+01:00",
    )
    assert fingerprint.alta(**{**base, "total": "123.46"}) != FIRST


def test_amounts_dates_and_moments_are_written_as_the_record_writes_them():
    assert fingerprint.amount_text(Decimal("123.4")) == "123.40"
    assert fingerprint.amount_text(Decimal("-3.2")) == "-3.20"
    assert fingerprint.amount_text(Decimal("-0.00")) == "0.00"
    assert fingerprint.date_text(datetime(2024, 1, 1).date()) == "01-01-2024"
    cet = timezone(timedelta(hours=1))
    assert fingerprint.moment_text(datetime(2024, 1, 1, 19, 20, 30, 999, tzinfo=cet)) == "2024-01-01T19:20:30+01:00"
    assert fingerprint.moment_text(datetime(2024, 7, 1, 17, 0, tzinfo=UTC)) == "2024-07-01T17:00:00+00:00"
    with pytest.raises(ValueError):
        fingerprint.moment_text(datetime(2024, 1, 1, 19, 20, 30))
