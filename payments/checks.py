"""System checks for payments: catch a deployment that cannot settle before its first hour does."""

from __future__ import annotations

from functools import cache

from django.core import checks
from django.core.exceptions import ImproperlyConfigured


@cache
def native_signing_available() -> bool:
    # Pure-Python signing manages ~80 tx/s: far too slow for an hourly run (docs/architecture.md, "BSV facts").
    from bsv.native import native_status

    return bool(native_status().get("available"))


@checks.register()
def check_payments_configuration(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    from payments import keys

    problems: list[checks.CheckMessage] = []
    if not native_signing_available():
        problems.append(
            checks.Error(
                "bsv-sdk's native secp256k1 extension is not available; settlement will refuse to run.",
                hint="Install the bsv-sdk wheel for this platform (it carries the extension).",
                id="payments.E001",
            )
        )
    try:
        keys.utility_address()
        keys.household_address(0)
    except ImproperlyConfigured as error:
        problems.append(checks.Error(str(error), id="payments.E002"))
    return problems
