"""System checks for statements: a deployment whose invoice records cannot be kept does not start."""

from __future__ import annotations

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
    return problems
