"""The types every network adapter shares: what a network answers, and the interface an adapter provides.

Apart from the package's ``__init__`` (which picks an adapter), so the adapters import these
without importing the package that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the network has it (mempool or better)
    CONFIRMED = "confirmed"  # in a block
    REJECTED = "rejected"  # invalid: never going to be mined
    DOUBLE_SPEND = "double_spend"  # an input is spent by another transaction
    RETRY = "retry"  # could not tell (timeout, 5xx, rate limit): ask again later
    UNKNOWN = "unknown"  # the network does not know the transaction


class NetworkUnavailable(Exception):
    """The network gave no usable answer now (rate limit, outage, bad data): try again later."""


@dataclass(frozen=True)
class Reply:
    outcome: Outcome
    detail: str = ""
    confirmations: int = 0


@dataclass(frozen=True)
class Coin:
    txid: str
    vout: int
    satoshis: int
    raw_parent: str  # hex of the transaction that created the coin
    confirmations: int


class BsvNetwork(Protocol):
    name: str

    def broadcast(self, raw_hex: str) -> Reply:
        """Submit a signed transaction. Submitting the same transaction again is harmless."""

    def status(self, txid: str) -> Reply:
        """Where a transaction is now."""

    def coins(self, address: str) -> list[Coin]:
        """Unspent outputs paying ``address`` as the network sees them."""

    def reachable(self) -> tuple[bool, str]:
        """Whether the network answers now, with a short reason (no host, URL or key): for /healthz."""
