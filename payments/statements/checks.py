"""System checks for statements: a deployment whose invoice records cannot be kept does not start."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core import checks


@checks.register()
def check_invoice_records(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from payments.statements.verifactu.records import nif

    problems: list[checks.CheckMessage] = []
    if settings.INVOICE_RECORDS_MODE == "sii":
        problems.append(
            checks.Error(
                "INVOICE_RECORDS_MODE=sii is not supported yet: EnergyPay keeps VERI*FACTU records only, and an "
                "issuer registered in the SII is outside VERI*FACTU.",
                hint="Set INVOICE_RECORDS_MODE=verifactu, or report the invoices to the SII with other software "
                "(docs/spain.md, 'VERI*FACTU').",
                id="statements.E001",
            )
        )
    elif not nif(settings.STATEMENT_ISSUER_TAX_ID):
        problems.append(
            checks.Error(
                f"STATEMENT_ISSUER_TAX_ID={settings.STATEMENT_ISSUER_TAX_ID!r} is not a Spanish NIF of 9 letters and "
                "digits; every VERI*FACTU record names its issuer by it.",
                hint="Set it to the issuer's NIF, e.g. B12345674.",
                id="statements.E002",
            )
        )
    if settings.INVOICE_RECORDS_MODE == "verifactu" and not nif(settings.VERIFACTU_PRODUCER_TAX_ID):
        problems.append(
            checks.Error(
                f"VERIFACTU_PRODUCER_TAX_ID={settings.VERIFACTU_PRODUCER_TAX_ID!r} is not a Spanish NIF of 9 letters "
                "and digits; every record names the producer of its invoicing system by it.",
                id="statements.E003",
            )
        )
    if settings.VERIFACTU_SEND_ENABLED:
        problems += _sending_problems()
    return problems


def _sending_problems() -> list[checks.CheckMessage]:
    """Sending to the AEAT needs the client certificate and its key (mutual TLS): named, and readable files."""
    problems: list[checks.CheckMessage] = []
    for name in ("VERIFACTU_CERT_FILE", "VERIFACTU_KEY_FILE"):
        path = getattr(settings, name)
        if not path:
            problems.append(
                checks.Error(
                    f"VERIFACTU_SEND_ENABLED is on but {name} is not set: the AEAT accepts records only over mutual "
                    "TLS with the issuer's (or its representative's) certificate.",
                    hint="Set VERIFACTU_CERT_FILE and VERIFACTU_KEY_FILE to the PEM files, or turn sending off "
                    "(docs/operations.md, 'VERI*FACTU sending').",
                    id="statements.E004",
                )
            )
        elif not Path(path).is_file():
            # The path is named, never the file's content.
            problems.append(checks.Error(f"{name}={path!r} is not a readable file.", id="statements.E005"))
    if not settings.VERIFACTU_ENDPOINT.startswith("https://") and not settings.DEBUG:
        problems.append(
            checks.Error(
                f"VERIFACTU_ENDPOINT={settings.VERIFACTU_ENDPOINT!r} is not https://: the records go only over TLS.",
                id="statements.E006",
            )
        )
    return problems
