"""BIP21 payment URIs: ``bitcoin:<address>?amount=<BSV>``, what wallet apps open to pay an amount.

The amount is in whole BSV as a plain decimal: at most 8 places (a satoshi), no trailing zeros, no
exponent ("0.0001", "1", "0.00000001"). BSV wallets (HandCash, ElectrumSV, Centbee) read the
``bitcoin:`` scheme, which BSV inherited.
"""

from __future__ import annotations

from decimal import Decimal

from lib.money import SATS_PER_BSV


def bsv_amount(satoshis: int) -> str:
    """``satoshis`` as BSV, exactly, in BIP21's decimal: no exponent, no trailing zeros, at most 8 places."""
    if isinstance(satoshis, bool) or not isinstance(satoshis, int) or satoshis <= 0:
        raise ValueError(f"a BIP21 amount is a positive whole number of satoshis, not {satoshis!r}")
    text = f"{Decimal(satoshis) / SATS_PER_BSV:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def payment_uri(address: str, satoshis: int | None = None) -> str:
    """``bitcoin:<address>``, with ``?amount=`` when ``satoshis`` is given."""
    uri = f"bitcoin:{address}"
    return f"{uri}?amount={bsv_amount(satoshis)}" if satoshis is not None else uri
