"""``POST /api/v1/arc/callback``: ARC tells us where a transaction we broadcast is (testnet, mainnet).

The broadcast registers the callback (payments/networks/arc.py: ``X-CallbackUrl`` = SITE_URL + this
path, ``X-CallbackToken`` = ARC_CALLBACK_TOKEN, full status updates); ARC then posts
``{"timestamp", "txid", "txStatus", "blockHeight", "blockHash", "extraInfo", "competingTxs", ...}``
with ``Authorization: Bearer <token>`` (bitcoin-sv/arc doc/api.md, "Callback"). For each delivery:

1. the token, compared in constant time (``hmac.compare_digest``); missing or wrong: 401;
2. the body: JSON of the callback's shape, at most MAX_BODY bytes; else 400 (413 when too large);
3. ARC's ``timestamp``: older than ARC_CALLBACK_MAX_AGE, or ahead of our clock by more than
   CLOCK_SKEW: 401 (a captured message sent again later changes nothing);
4. the same message (txid, status, timestamp) delivered before: 401, replayed (a unique digest);
5. the payment with that txid, of any kind (settlements, community passes), moved on through its own
   lifecycle (``OutgoingPayment.mark_accepted`` / ``fail``, which lock and re-check: a payment that
   moved on meanwhile is a logged no-op). The status is read exactly as polling reads it
   (``arc.callback_reply``), so the two never disagree: SEEN_ON_NETWORK, STORED... -> seen; MINED ->
   confirmed (the block height in its detail); REJECTED -> rejected, or double spend when ARC names a
   conflict. DOUBLE_SPEND_ATTEMPTED is undecided until one side is mined (failing now would reopen
   hours this very transaction may yet pay: a double charge), so it is noted and the payment waits for
   ARC's MINED or REJECTED, or for polling.

Every delivery, refused or not, is a row of ``ArcCallback`` (the admin's "ARC callbacks"): steps 4 and
5 happen in one transaction with its row, so a failure leaves neither and ARC's retry finds a clean
slate. A refusal's wallet is resynced by a task (``payments.tasks.resync_wallet``), not in the
request. The token is never logged, stored or echoed. Polling (``watch_settlements``,
``watch_community_passes``) stays the fallback for every callback ARC does not manage to deliver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lib import jsonapi
from lib.jsonapi import reject_constant
from payments.models import REFUSALS, ArcCallback, CommunityPass, OutgoingPayment, PaymentState, Settlement, Withdrawal
from payments.networks import NetworkUnavailable, Outcome
from payments.networks.arc import callback_reply

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # a callback with a merkle path is a few kB
EXCERPT = 1000  # what the log keeps of a body
CLOCK_SKEW = timedelta(minutes=1)
KINDS: tuple[type[OutgoingPayment], ...] = (Settlement, CommunityPass, Withdrawal)
Result = ArcCallback.Outcome


class CallbackBody(BaseModel):
    """ARC's Callback object; fields ARC may add later are ignored."""

    model_config = ConfigDict(extra="ignore")

    timestamp: datetime
    txid: str = Field(pattern=r"^[0-9a-f]{64}$")
    txStatus: str = Field(min_length=1, max_length=40, pattern=r"^[A-Z_]+$")
    blockHeight: int | None = Field(default=None, ge=0)
    blockHash: str | None = Field(default=None, max_length=64)
    extraInfo: str | None = Field(default=None, max_length=2000)
    competingTxs: list[Any] | None = None
    merklePath: str | None = None


class _Refused(Exception):
    def __init__(self, status: int, outcome: str, message: str) -> None:
        super().__init__(message)
        self.status, self.outcome, self.message = status, outcome, message


class _SyncLater:
    """The network as a refusal recorded here sees it: coins are not asked for while ARC waits on us.

    ``OutgoingPayment.fail`` resyncs the payer's wallet after the commit; here that becomes a task for
    the wallet's address (a worker asks WhatsOnChain), and the request returns at once.
    """

    name = "callback"

    def coins(self, address: str):
        from payments import tasks  # tasks imports this module's neighbours; the task is only needed here

        transaction.on_commit(lambda: tasks.resync_wallet.delay(address))
        raise NetworkUnavailable("coins are resynced by a task")

    def status(self, txid: str):
        raise NetworkUnavailable("a callback does not ask the network")

    def broadcast(self, raw_hex: str):
        raise NetworkUnavailable("a callback does not broadcast")


@csrf_exempt  # a machine's POST with a bearer token: no cookie, nothing a browser could forge
def arc_callback(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return jsonapi.error(405, "use POST", Allow="POST")
    entry = ArcCallback()
    try:
        raw = _read(request, entry)
        _authorize(request.headers.get("Authorization", ""))
        if raw is None:
            raise _Refused(413, Result.MALFORMED, f"the body is over {MAX_BODY} bytes")
        body = _parse(raw)
        entry.txid, entry.tx_status, entry.sent_at = body.txid, body.txStatus, body.timestamp
        entry.block_height = body.blockHeight
        _check_time(body.timestamp, timezone.now())
        with transaction.atomic():
            entry.digest = _digest(body)
            entry.save()
            _apply(entry, body)
            entry.save(update_fields=["outcome", "detail", "payment_kind", "payment_id"])
    except _Refused as refused:
        return _refuse(entry, refused)
    except IntegrityError:
        if entry.digest and ArcCallback.objects.filter(digest=entry.digest).exists():  # let in before
            return _refuse(entry, _Refused(401, Result.REPLAYED, "this callback was delivered before"))
        log.exception("arc_callback_failed txid=%s", entry.txid)
        return jsonapi.error(503, "temporarily unable to record the callback; send it again", Retry_After="30")
    except DatabaseError:
        log.exception("arc_callback_failed txid=%s", entry.txid)
        return jsonapi.error(503, "temporarily unable to record the callback; send it again", Retry_After="30")
    log.info(
        "arc_callback txid=%s status=%s outcome=%s %s=%s",
        entry.txid,
        entry.tx_status,
        entry.outcome,
        entry.payment_kind or "payment",
        entry.payment_id,
    )
    return JsonResponse({"outcome": entry.outcome})


def _read(request: HttpRequest, entry: ArcCallback) -> bytes | None:
    """The body, its start kept on ``entry``; None when it is over MAX_BODY (then it is not read at all)."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY:
        return None
    raw = request.body
    entry.body = raw[:EXCERPT].decode("utf-8", "replace")
    return raw if len(raw) <= MAX_BODY else None


def _authorize(authorization: str) -> None:
    expected = settings.ARC_CALLBACK_TOKEN
    scheme, _, token = authorization.strip().partition(" ")
    # compare_digest on bytes of the same encoding: its time does not depend on where the two differ.
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise _Refused(401, Result.UNAUTHORIZED, "missing or wrong callback token")


def _parse(raw: bytes) -> CallbackBody:
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refused(400, Result.MALFORMED, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise _Refused(400, Result.MALFORMED, "the body is not a callback object (batches are not asked for)")
    try:
        body = CallbackBody.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise _Refused(400, Result.MALFORMED, f"{where}: {first['msg']}") from None
    if body.timestamp.tzinfo is None:
        raise _Refused(400, Result.MALFORMED, "timestamp: a time zone is required")
    return body


def _check_time(sent_at: datetime, now: datetime) -> None:
    if sent_at < now - settings.ARC_CALLBACK_MAX_AGE:
        raise _Refused(401, Result.STALE, "the callback's timestamp is too old")
    if sent_at > now + CLOCK_SKEW:
        raise _Refused(401, Result.STALE, "the callback's timestamp is in the future")


def _digest(body: CallbackBody) -> str:
    message = f"{body.txid}|{body.txStatus}|{body.timestamp.isoformat()}"
    return hashlib.sha256(message.encode()).hexdigest()


def _refuse(entry: ArcCallback, refused: _Refused) -> JsonResponse:
    """Log the refused delivery (its own row, no digest) and answer with the reason; nothing else changes."""
    entry.pk, entry.digest, entry.payment_kind, entry.payment_id = None, "", "", None
    entry.outcome, entry.detail = refused.outcome, refused.message[:300]
    try:
        entry.save()
    except DatabaseError:
        log.exception("arc_callback_log_failed")
    log.warning("arc_callback_refused txid=%s outcome=%s detail=%s", entry.txid, entry.outcome, refused.message)
    headers = {"WWW_Authenticate": "Bearer"} if refused.status == 401 else {}
    return jsonapi.error(refused.status, refused.message, **headers)


def _payment(txid: str) -> OutgoingPayment | None:
    """The payment carrying ``txid``: a live one first (a failed settlement may share a live one's txid)."""
    for kind in KINDS:
        rows = kind.objects.filter(txid=txid).only("state", "txid")
        payment = rows.exclude(state__in=OutgoingPayment.FAILED).first() or rows.first()
        if payment is not None:
            return payment
    return None


def _apply(entry: ArcCallback, body: CallbackBody) -> None:
    """Move the payment on as the status says, through its lifecycle; the outcome goes on ``entry``."""
    payment = _payment(body.txid)
    if payment is None:
        entry.outcome, entry.detail = Result.UNKNOWN_TXID, "no settlement or community pass has this txid"
        return
    entry.payment_kind, entry.payment_id = payment.LOG_NAME, payment.pk
    reply = callback_reply(body.model_dump(mode="json"))
    before = payment.state
    if reply.outcome == Outcome.CONFIRMED:
        target = PaymentState.CONFIRMED
    elif reply.outcome == Outcome.ACCEPTED:
        target = PaymentState.SEEN
    elif reply.outcome in REFUSALS:
        target = REFUSALS[reply.outcome]
    else:
        entry.outcome, entry.detail = Result.NOTED, f"{reply.detail[:250]}; the payment stays {before}"
        return
    if before not in OutgoingPayment.PENDING or (before == target == PaymentState.SEEN):
        if before in OutgoingPayment.FAILED and reply.outcome in (Outcome.ACCEPTED, Outcome.CONFIRMED):
            # Staff must look: a payment we undid (its hours owed again) is on the network after all.
            log.error("arc_callback_accepted_after_failure %s=%s state=%s", payment.LOG_NAME, payment.pk, before)
        entry.outcome, entry.detail = Result.UNCHANGED, f"the payment is {before} already"
        return
    if target in OutgoingPayment.FAILED:
        after = payment.fail(target, reply.detail, _SyncLater())
    else:
        after = payment.mark_accepted(target, reply.detail)
    # The methods answer the state found when they skip a payment that moved on meanwhile (a lost
    # race: polling got there first), which may be ``target`` too: ours moved it only if ours is the
    # reply on the row. A machine's pass claim the network never took is dropped rather than failed ("").
    ours = type(payment).objects.filter(pk=payment.pk, state=target, detail=reply.detail[:1000]).exists()
    moved = (after == target and ours) or (not after and target in OutgoingPayment.FAILED)
    entry.outcome = Result.APPLIED if moved else Result.UNCHANGED
    entry.detail = f"{before} -> {after or 'dropped'}: {reply.detail}"[:300] if moved else f"the payment is {after}"
