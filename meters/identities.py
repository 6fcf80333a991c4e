"""Who and where a supply is, in Spain: the account holder's tax ID and the supply point (CUPS).

Checked with python-stdnum (``stdnum.es.nif``: DNI, NIE and company NIFs with their control
character; ``stdnum.es.cups``: "ES", 16 digits, two control letters and an optional border point
and type), not by hand. Stored compact and upper-case, as the statement prints them (docs/spain.md).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from stdnum.es import cups, nif
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength
from stdnum.exceptions import ValidationError as Bad


def compact_tax_id(value: str) -> str:
    return nif.compact(value)


def compact_cups(value: str) -> str:
    return cups.compact(value)


def validate_tax_id(value: str) -> None:
    try:
        nif.validate(value)
    except InvalidChecksum:
        raise ValidationError(
            "%(value)s: the control character is wrong. Check the tax ID against the holder's document.",
            code="tax_id_checksum",
            params={"value": value},
        ) from None
    except (InvalidLength, InvalidFormat, InvalidComponent, Bad):
        raise ValidationError(
            "%(value)s is not a Spanish tax ID: a DNI (8 digits and a letter, 12345678Z), an NIE (X, Y or Z, "
            "7 digits and a letter, X1234567L) or a company NIF (B12345674).",
            code="tax_id_format",
            params={"value": value},
        ) from None


def validate_cups(value: str) -> None:
    try:
        cups.validate(value)
    except InvalidChecksum:
        raise ValidationError(
            "%(value)s: the two control letters do not match the CUPS's digits. Copy it again from a bill "
            "or from the distributor.",
            code="cups_checksum",
            params={"value": value},
        ) from None
    except (InvalidLength, InvalidFormat, InvalidComponent, Bad):
        raise ValidationError(
            "%(value)s is not a CUPS: ES, 16 digits and two control letters (ES0021000000000001RK), "
            "optionally followed by a digit and a letter.",
            code="cups_format",
            params={"value": value},
        ) from None
