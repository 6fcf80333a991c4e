"""One interface to the BSV network, whichever ``BSV_NETWORK`` is configured.

- ``local``: payments.networks.local.LocalLedger, a ledger in our database;
- ``regtest``: a real node over JSON-RPC;
- ``testnet`` / ``mainnet``: ARC to broadcast, WhatsOnChain to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from django.conf import settings


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


def get_network() -> BsvNetwork:
    if settings.BSV_NETWORK == "local":
        from payments.networks.local import LocalLedger

        return LocalLedger()
    if settings.BSV_NETWORK == "regtest":
        from payments.networks.node import NodeRpc

        return NodeRpc(settings.BSV_NODE_RPC_URL)
    from payments.networks.arc import ArcWhatsOnChain

    return ArcWhatsOnChain(
        arc_url=settings.ARC_URL,
        arc_api_key=settings.ARC_API_KEY,
        woc_api_key=settings.WOC_API_KEY,
        mainnet=settings.BSV_NETWORK == "mainnet",
    )


def explorer_url(txid: str) -> str:
    """Where people look a transaction up (EXPLORER_TX_URL: testnet, mainnet); "" where no explorer knows it."""
    return settings.EXPLORER_TX_URL.format(txid=txid) if settings.EXPLORER_TX_URL and txid else ""
