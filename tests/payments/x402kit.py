"""Shared pieces of the GET /api/v1/community (x402) tests: the moment, the price, a network that is down.

- ``NOW`` / ``URL`` / ``PRICE``: the frozen moment, the endpoint, and what a pass costs in these tests
  (the ``community_price`` fixture of tests/payments/conftest.py sets it);
- ``Unreachable``: a network whose broadcast fails and whose status knows nothing, as after a lost answer.
"""

from __future__ import annotations

from datetime import UTC, datetime

from payments.networks import NetworkUnavailable, Outcome, Reply

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
URL = "/api/v1/community"
PRICE = 1000


class Unreachable:
    name = "local"

    def broadcast(self, raw_hex: str) -> Reply:
        raise NetworkUnavailable("connection refused")

    def status(self, txid: str) -> Reply:
        return Reply(Outcome.UNKNOWN, "not found")
