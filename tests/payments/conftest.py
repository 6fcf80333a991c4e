from __future__ import annotations

from collections.abc import Callable

import pytest
from bsv import Transaction

from payments.models import LedgerTransaction
from payments.networks.local import LocalLedger
from tests.payments.x402kit import PRICE


@pytest.fixture
def ledger(db) -> LocalLedger:
    return LocalLedger()


@pytest.fixture
def faucet(ledger) -> Callable[[str, int], Transaction]:
    """``faucet(address, satoshis)`` funds the address and returns the faucet transaction, ready to spend."""

    def fund(address: str, satoshis: int) -> Transaction:
        txid = ledger.fund(address, satoshis)
        return Transaction.from_hex(LedgerTransaction.objects.get(txid=txid).raw)

    return fund


@pytest.fixture
def community_price(settings) -> int:
    """A community pass costs x402kit.PRICE satoshis, whatever the environment configures."""
    settings.COMMUNITY_PRICE_SATS = PRICE
    return PRICE
