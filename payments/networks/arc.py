"""Testnet and mainnet (BSV_NETWORK=testnet|mainnet): ARC to broadcast, WhatsOnChain to read.

Broadcasting goes through bsv-sdk's ARC class (``sync_broadcast``, ``check_transaction_status``).
We only hold the raw transaction here, without its parents, so the SDK posts it as JSON
``{"rawTx": "<raw hex>"}``; ARC accepts raw transactions and fetches the parents itself (extended
format only spares it that lookup). When it cannot find them it answers 460, which we treat like
a node's "missing inputs": REJECTED.

ARC's answer is read by its ``txStatus`` first, whatever the HTTP status or the SDK's
success/failure says: a DOUBLE_SPEND_ATTEMPTED arrives as a success (docs/architecture.md, "BSV facts").
Network trouble (timeouts, refused connections, 5xx, 429) is never raised from ``broadcast`` or
``status``: it is a RETRY, and the sweeper sends the transaction again later.

A mined transaction's confirmations come from WhatsOnChain's chain height (``/chain/info``, kept
for TIP_TTL seconds), since ARC gives only the block height.

``coins`` reads WhatsOnChain. It retries rate limits and outages a few times with a bounded
back-off (honouring Retry-After), then raises NetworkUnavailable: its caller (``sync_coins``) has
nothing sensible to return without the network, and the next sync tries again.

API keys never appear in a Reply's detail, an exception message or a log line.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from bsv import P2PKH, Transaction
from bsv.broadcasters.arc import ARC, ARCConfig
from bsv.broadcasters.broadcaster import BroadcastFailure, BroadcastResponse
from bsv.constants import Network
from bsv.hash import hash256
from bsv.http_client import HttpResponse, SyncHttpClient
from bsv.utils import validate_address

from payments.networks.base import Coin, NetworkUnavailable, Outcome, Reply

log = logging.getLogger(__name__)

WOC_URL = "https://api.whatsonchain.com/v1/bsv/{chain}"
ARC_TIMEOUT = 30  # seconds; a broadcast may wait for the network's first answer
ARC_STATUS_TIMEOUT = 10
WOC_TIMEOUT = 10
WOC_ATTEMPTS = 4  # WhatsOnChain allows 3 requests/s without a key: a burst can meet a few 429s
FIRST_BACKOFF = 1.0  # seconds, doubled at each attempt unless Retry-After says otherwise
MAX_BACKOFF = 30.0  # the longest single wait, whatever Retry-After asks
TIP_TTL = 30.0  # seconds a chain height stays good for counting confirmations
PING_TIMEOUT = 3  # /healthz: one GET of /chain/info, no retries
MAX_DETAIL = 1000  # what a settlement keeps of a reply's detail

TXID = re.compile(r"[0-9a-f]{64}")

# HTTP statuses with which ARC refuses a transaction for good (bitcoin-sv/arc doc/errors.md):
# 460 parents not found, 461 scripts, 462 inputs, 463/464 malformed or bad outputs, 465 fee,
# 467-469 bad BEEF, 471/472 frozen inputs, 473 cumulative fee. 466 is a conflict (double spend).
ARC_REFUSALS = frozenset({460, 461, 462, 463, 464, 465, 467, 468, 469, 471, 472, 473})
ARC_CONFLICT = 466
# txStatus values whose meaning for us is not the SDK category's (ARC.categorize_transaction_status).
OUTCOME_BY_STATUS = {
    # Undecided until one side is mined: failing now would reopen hours that may yet be paid by this
    # very transaction. Wait; a later REJECTED (the rival won) or MINED (we won) settles it.
    "DOUBLE_SPEND_ATTEMPTED": Outcome.RETRY,
    "SEEN_IN_ORPHAN_MEMPOOL": Outcome.RETRY,  # a parent is missing: send again once it is there
    "MINED_IN_STALE_BLOCK": Outcome.ACCEPTED,  # a reorg put it back in the mempool
    "UNKNOWN": Outcome.RETRY,
}
OUTCOME_BY_CATEGORY = {
    "mined": Outcome.CONFIRMED,
    "0confirmation": Outcome.ACCEPTED,
    "progressing": Outcome.ACCEPTED,  # QUEUED, RECEIVED, STORED, ANNOUNCED_TO_NETWORK, ...
    "warning": Outcome.ACCEPTED,  # only SEEN_ON_NETWORK with competing txs gets here; ours is the one seen
    "rejected": Outcome.REJECTED,
}
# Node reasons inside a REJECTED txStatus that mean "an input is spent by another transaction".
CONFLICT_REASONS = ("txn-mempool-conflict", "txn-double-spend", "double spend", "double-spend")


@dataclass(frozen=True)
class _Unspent:
    txid: str
    vout: int
    satoshis: int
    height: int  # 0 while unconfirmed


class _SdkHttpClient(SyncHttpClient):
    """bsv-sdk's own client, keeping the Retry-After header the SDK would otherwise drop.

    The SDK hands the dict built here back to us (``more["arc_json"]`` of a failure), so a
    rate-limited broadcast can say when to come back. ``_make_response`` is private to bsv-sdk,
    which is pinned (2.4.0); test_rate_limit_is_retried_with_the_wait_arc_asks_for guards it.
    """

    def _make_response(self, response: requests.Response) -> HttpResponse:
        made = super()._make_response(response)
        retry_after = response.headers.get("Retry-After")
        if retry_after:
            made.json_data["retry_after"] = retry_after
        return made


class ArcWhatsOnChain:
    def __init__(
        self,
        *,
        arc_url: str,
        arc_api_key: str | None,
        woc_api_key: str | None,
        mainnet: bool,
        callback_url: str = "",
        callback_token: str = "",
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = "mainnet" if mainnet else "testnet"
        self._network = Network.MAINNET if mainnet else Network.TESTNET
        self._secrets = [key for key in (arc_api_key, woc_api_key, callback_token) if key]
        # With a callback URL and token ARC posts each status change to us (payments/arc_callbacks.py);
        # full status updates add SEEN_ON_NETWORK to the default MINED and refusals. Polling stays.
        callbacks = bool(callback_url and callback_token)
        self._arc = ARC(
            arc_url.rstrip("/"),
            ARCConfig(
                api_key=arc_api_key or None,
                sync_http_client=_SdkHttpClient(),
                deployment_id="energypay",
                callback_url=callback_url if callbacks else None,
                callback_token=callback_token if callbacks else None,
                headers={"X-FullStatusUpdates": "true"} if callbacks else None,
            ),
        )
        self._woc_url = WOC_URL.format(chain="main" if mainnet else "test")
        self._woc_headers = {"Authorization": woc_api_key, "woc-api-key": woc_api_key} if woc_api_key else {}
        self._session = session or requests.Session()
        self._sleep = sleep
        self._tip_cache: tuple[float, int] | None = None

    def __repr__(self) -> str:
        return f"<ArcWhatsOnChain {self.name}>"  # never the keys

    # --- The BsvNetwork interface ---

    def broadcast(self, raw_hex: str) -> Reply:
        """Send ``raw_hex`` to ARC and say what ARC made of it; a transaction ARC knows gets its status."""
        tx = _parse(raw_hex)
        if tx is None:
            return Reply(Outcome.REJECTED, "malformed transaction: the hex does not decode to exactly one transaction")
        result = self._arc.sync_broadcast(tx, timeout=ARC_TIMEOUT)
        reply = self._redacted(self._broadcast_reply(result))
        log.log(
            logging.WARNING if reply.outcome == Outcome.RETRY else logging.INFO,
            "arc_broadcast txid=%s outcome=%s detail=%s",
            tx.txid(),
            reply.outcome,
            reply.detail[:300],
        )
        return reply

    def status(self, txid: str) -> Reply:
        if not TXID.fullmatch(txid):
            raise ValueError(f"{txid!r} is not a transaction id (64 lowercase hex digits).")
        answer = self._arc.check_transaction_status(txid, timeout=ARC_STATUS_TIMEOUT)
        failed = answer.get("status") == "failure"  # the SDK's failure shape; a success has no "status"
        return self._redacted(_status_failure_reply(answer) if failed else self._status_reply(answer))

    def coins(self, address: str) -> list[Coin]:
        """Unspent outputs paying ``address``, each with its hash-checked parent transaction.

        1. the unspent list (``/address/{a}/unspent/all``), minus outputs a mempool transaction spends;
        2. each distinct parent once (``/tx/{txid}/hex``); it must hash to its txid, and the output
           must be a P2PKH to ``address`` (the only kind our wallets can sign for);
        3. confirmations from the chain height (``/chain/info``), only if some coin is mined.

        Raises NetworkUnavailable when WhatsOnChain cannot answer, even after backing off.
        """
        if not validate_address(address, self._network):
            raise ValueError(f"{address!r} is not a {self.name} address.")
        unspent = self._unspent(address)
        parents = {txid: self._parent(txid) for txid in dict.fromkeys(entry.txid for entry in unspent)}
        tip = self._tip() if any(entry.height > 0 for entry in unspent) else 0
        lock = P2PKH().lock(address).serialize()
        coins = []
        for entry in unspent:
            raw, parent = parents[entry.txid]
            coin = _coin(entry, raw, parent, lock, tip)
            if coin is not None:
                coins.append(coin)
        return coins

    def reachable(self) -> tuple[bool, str]:
        """Whether WhatsOnChain answers ``/chain/info`` now: one GET, PING_TIMEOUT, no retry or back-off."""
        try:
            response = self._session.get(self._woc_url + "/chain/info", headers=self._woc_headers, timeout=PING_TIMEOUT)
        except requests.RequestException as error:
            return False, f"WhatsOnChain: {type(error).__name__}"
        if not response.ok:
            return False, f"WhatsOnChain: HTTP {response.status_code}"
        try:
            blocks = response.json().get("blocks")
        except (ValueError, AttributeError):
            return False, "WhatsOnChain: no chain info"
        return True, f"WhatsOnChain height {blocks}" if isinstance(blocks, int) else "WhatsOnChain answering"

    # --- ARC answers ---

    def _broadcast_reply(self, result: BroadcastResponse | BroadcastFailure) -> Reply:
        if isinstance(result, BroadcastResponse):
            return self._status_reply(_arc_body(result.extra))
        more = result.more or {}
        if result.code == "ARC_TX_STATUS":  # HTTP 200 with a failing txStatus (REJECTED, ...)
            return self._status_reply(_arc_body(more))
        if "http_status" not in more:  # the SDK choked on the answer itself
            return Reply(Outcome.RETRY, f"ARC's answer could not be read ({more.get('exception_type', 'error')})")
        return _http_failure_reply(more["http_status"], more.get("arc_json") or {})

    def _status_reply(self, body: dict[str, Any]) -> Reply:
        outcome = _outcome_for(body)
        detail = _describe(body)
        if outcome == Outcome.CONFIRMED:
            return Reply(outcome, detail, self._confirmations(body.get("blockHeight")))
        if outcome == Outcome.RETRY and body.get("txStatus") == "SEEN_IN_ORPHAN_MEMPOOL":
            detail += "; a parent transaction is not on the network yet, send again later"
        return Reply(outcome, detail)

    def _confirmations(self, block_height: object) -> int:
        """ARC gives the block height only; WhatsOnChain's chain height gives the depth."""
        if not isinstance(block_height, int) or block_height <= 0:
            return 1
        try:
            tip = self._tip()
        except NetworkUnavailable as error:
            log.warning("woc_tip_unavailable detail=%s", error)
            return 1  # mined means at least one
        return max(1, tip - block_height + 1)

    def _redacted(self, reply: Reply) -> Reply:
        # Scrub before cutting: a cut could leave part of a key behind.
        return Reply(reply.outcome, self._scrub(reply.detail)[:MAX_DETAIL], reply.confirmations)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "[redacted]")
        return text

    # --- WhatsOnChain ---

    def _unspent(self, address: str) -> list[_Unspent]:
        body = self._woc_json(f"/address/{address}/unspent/all")
        if not isinstance(body, dict) or not isinstance(body.get("result"), list):
            raise NetworkUnavailable("WhatsOnChain's unspent list has no result list")
        if body.get("error"):
            raise NetworkUnavailable(self._scrub(f"WhatsOnChain's unspent list says: {body['error']}")[:MAX_DETAIL])
        if any("page" in key.lower() and value for key, value in body.items()):
            # Confirmed coins come 1,000 a page; a household wallet never holds that many.
            log.warning("woc_unspent_truncated address=%s: only the first page was read", address)
        return [_read_unspent(entry) for entry in body["result"] if not _spent_in_mempool(entry)]

    def _parent(self, txid: str) -> tuple[str, Transaction]:
        raw = self._woc_get(f"/tx/{txid}/hex").text.strip().lower()
        try:
            data = bytes.fromhex(raw)
            parent = Transaction.from_hex(data)
        except Exception:  # bsv-sdk raises several types on bad input
            parent = None
        if parent is None or hash256(data)[::-1].hex() != txid or parent.serialize() != data:
            raise NetworkUnavailable(f"WhatsOnChain's hex for {txid} is not that transaction")
        return raw, parent

    def _tip(self) -> int:
        """The chain height from ``/chain/info`` (bsv-sdk's WhatsOnChainTracker.current_height() returns 0)."""
        now = time.monotonic()
        if self._tip_cache and now - self._tip_cache[0] < TIP_TTL:
            return self._tip_cache[1]
        body = self._woc_json("/chain/info")
        blocks = body.get("blocks") if isinstance(body, dict) else None
        if not isinstance(blocks, int) or blocks <= 0:
            raise NetworkUnavailable("WhatsOnChain's chain info has no block height")
        self._tip_cache = (now, blocks)
        return blocks

    def _woc_json(self, path: str) -> Any:
        try:
            return self._woc_get(path).json()
        except ValueError:
            raise NetworkUnavailable(f"WhatsOnChain answered {path} with something other than JSON") from None

    def _woc_get(self, path: str) -> requests.Response:
        """GET a WhatsOnChain path, waiting out rate limits and outages a bounded number of times."""
        problem, wait = "", 0.0
        for attempt in range(WOC_ATTEMPTS):
            if attempt:
                wait = min(MAX_BACKOFF, wait)
                log.warning("woc_backoff path=%s problem=%s wait=%.1f attempt=%d", path, problem, wait, attempt + 1)
                self._sleep(wait)
            try:
                response = self._session.get(self._woc_url + path, headers=self._woc_headers, timeout=WOC_TIMEOUT)
            except requests.RequestException as error:
                problem, wait = type(error).__name__, FIRST_BACKOFF * 2**attempt
                continue
            if response.ok:
                return response
            if response.status_code != 429 and response.status_code < 500:
                raise NetworkUnavailable(f"WhatsOnChain answered {path} with HTTP {response.status_code}")
            problem = f"HTTP {response.status_code}"
            wait = _retry_after(response.headers.get("Retry-After"))
            if wait is None:
                wait = FIRST_BACKOFF * 2**attempt
        raise NetworkUnavailable(f"WhatsOnChain unavailable for {path} after {WOC_ATTEMPTS} attempts ({problem})")


# --- Helpers without state ---


def callback_reply(body: dict[str, Any]) -> Reply:
    """What an ARC callback body (``{"txid", "txStatus", "blockHeight", ...}``) says, read as a status is.

    The same mapping as ``status`` and ``broadcast`` (``_outcome_for``), so a callback and polling can
    never disagree about a transaction. A mined one counts one confirmation: the callback says mined,
    and no request waits on WhatsOnChain for the depth.
    """
    outcome = _outcome_for(body)
    return Reply(outcome, _describe(body)[:MAX_DETAIL], 1 if outcome == Outcome.CONFIRMED else 0)


def _parse(raw_hex: str) -> Transaction | None:
    try:
        raw = bytes.fromhex(raw_hex)
        tx = Transaction.from_hex(raw)
    except Exception:  # bsv-sdk raises several types on bad input; all mean "not a transaction"
        return None
    # bsv-sdk ignores trailing bytes: well formed means it serializes back to exactly these bytes.
    if tx is None or tx.serialize() != raw:
        return None
    return tx


def _arc_body(wrapper: dict[str, Any] | None) -> dict[str, Any]:
    """ARC's JSON body out of what the SDK keeps (``{"arc_json": {"data": body}}``)."""
    body = ((wrapper or {}).get("arc_json") or {}).get("data")
    return body if isinstance(body, dict) else {}


def _outcome_for(body: dict[str, Any]) -> Outcome:
    status = body.get("txStatus")
    if status in OUTCOME_BY_STATUS:
        return OUTCOME_BY_STATUS[status]
    category = ARC.categorize_transaction_status(body)["status_category"]
    outcome = OUTCOME_BY_CATEGORY.get(category, Outcome.RETRY)  # unknown or missing txStatus: ask again
    extra = str(body.get("extraInfo") or "").lower()
    if outcome == Outcome.REJECTED and any(reason in extra for reason in CONFLICT_REASONS):
        return Outcome.DOUBLE_SPEND
    return outcome


def _describe(body: dict[str, Any]) -> str:
    parts = [f"ARC {body.get('txStatus') or 'answer without txStatus'}"]
    if body.get("blockHeight"):
        parts.append(f"in block {body['blockHeight']}")
    if body.get("extraInfo"):
        parts.append(str(body["extraInfo"]))
    competing = list(_flatten(body.get("competingTxs") or []))
    if competing:
        parts.append("competing transactions: " + ", ".join(competing[:5]))
    return "; ".join(parts)


def _flatten(items: Iterable[Any]) -> Iterable[str]:
    # The ARC spec types competingTxs as a list of txids; its own example nests them one level.
    for item in items:
        if isinstance(item, list):
            yield from (str(inner) for inner in item)
        else:
            yield str(item)


def _http_failure_reply(http_status: int, arc_json: dict[str, Any]) -> Reply:
    if arc_json.get("error_type"):  # requests raised: bsv-sdk reports a timeout as 408, no connection as 503
        return Reply(Outcome.RETRY, f"ARC unreachable ({arc_json['error_type']}); send again later")
    body = arc_json.get("data") if isinstance(arc_json.get("data"), dict) else {}
    reason = _reason(body)
    if http_status == ARC_CONFLICT:
        return Reply(Outcome.DOUBLE_SPEND, f"ARC {http_status}: {reason}")
    if http_status in ARC_REFUSALS:
        return Reply(Outcome.REJECTED, f"ARC {http_status}: {reason}")
    wait = _retry_after(arc_json.get("retry_after"))
    later = f"retry after {wait:.0f} s" if wait is not None else "send again later"
    if http_status == 429:
        return Reply(Outcome.RETRY, f"ARC rate limit (HTTP 429); {later}")
    if http_status in (401, 403):
        return Reply(Outcome.RETRY, f"ARC refused our credentials (HTTP {http_status}): check ARC_API_KEY; {later}")
    return Reply(Outcome.RETRY, f"ARC HTTP {http_status}: {reason}; {later}")


def _status_failure_reply(answer: dict[str, Any]) -> Reply:
    code = _as_int(answer.get("code"))
    if code == 404:
        return Reply(Outcome.UNKNOWN, "ARC does not know this transaction")
    detail = str(answer.get("detail") or answer.get("title") or "no detail")
    return Reply(Outcome.RETRY, f"ARC status check failed ({code or answer.get('code')}): {detail}; ask again later")


def _reason(body: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("title", "detail", "extraInfo"):
        text = str(body.get(key) or "").strip()
        if text and text not in parts:
            parts.append(text)
    return "; ".join(parts) or "no reason given"


def _retry_after(value: object) -> float | None:
    """Seconds to wait from a Retry-After value (seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(str(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _as_int(value: object) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _spent_in_mempool(entry: object) -> bool:
    return isinstance(entry, dict) and entry.get("isSpentInMempoolTx") is True


def _read_unspent(entry: object) -> _Unspent:
    if not isinstance(entry, dict):
        raise NetworkUnavailable("WhatsOnChain sent an unspent entry that is not an object")
    txid, vout, value, height = entry.get("tx_hash"), entry.get("tx_pos"), entry.get("value"), entry.get("height", 0)
    if not (isinstance(txid, str) and TXID.fullmatch(txid) and _is_count(vout) and _is_count(value)):
        raise NetworkUnavailable("WhatsOnChain sent an unspent entry without a readable tx_hash, tx_pos or value")
    return _Unspent(txid, vout, value, height if _is_count(height) else 0)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _coin(entry: _Unspent, raw: str, parent: Transaction, lock: bytes, tip: int) -> Coin | None:
    if entry.vout >= len(parent.outputs):
        raise NetworkUnavailable(f"WhatsOnChain lists output {entry.vout} of {entry.txid}, which has no such output")
    output = parent.outputs[entry.vout]
    if output.locking_script.serialize() != lock:
        log.warning("woc_coin_skipped outpoint=%s:%d reason=not_p2pkh_to_address", entry.txid, entry.vout)
        return None
    if output.satoshis != entry.satoshis:
        # The parent hashes to its txid, so its amount is the truth; WhatsOnChain's is only an index.
        log.warning(
            "woc_value_mismatch outpoint=%s:%d listed=%d parent=%d",
            entry.txid,
            entry.vout,
            entry.satoshis,
            output.satoshis,
        )
    confirmations = max(1, tip - entry.height + 1) if entry.height > 0 else 0
    return Coin(entry.txid, entry.vout, output.satoshis, raw, confirmations)
