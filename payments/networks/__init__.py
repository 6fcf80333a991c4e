"""One interface to the BSV network, whichever ``BSV_NETWORK`` is configured.

- ``local``: payments.networks.local.LocalLedger, a ledger in our database;
- ``regtest``: a real node over JSON-RPC;
- ``testnet`` / ``mainnet``: ARC to broadcast, WhatsOnChain to read.
"""

from __future__ import annotations

from django.conf import settings

from lib.urls import absolute_reverse
from payments.networks.base import BsvNetwork, Coin, NetworkUnavailable, Outcome, Reply

__all__ = ["BsvNetwork", "Coin", "NetworkUnavailable", "Outcome", "Reply", "get_network"]


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
        callback_url=absolute_reverse("api-arc-callback") if settings.ARC_CALLBACK_TOKEN else "",
        callback_token=settings.ARC_CALLBACK_TOKEN,
    )


def explorer_url(txid: str) -> str:
    """Where people look a transaction up (EXPLORER_TX_URL: testnet, mainnet); "" where no explorer knows it."""
    return settings.EXPLORER_TX_URL.format(txid=txid) if settings.EXPLORER_TX_URL and txid else ""
