"""``POST /api/v1/readings``: the meter ingest endpoint (docs/architecture.md, "Meter ingest")."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, transaction
from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from lib import metrics
from lib.jsonapi import error
from lib.jsonapi import reject_constant as _reject_constant
from meters import fastpath, ratelimit
from meters.hooks import load_hook, usage_changed
from meters.ingest import ingest_locked
from meters.models import Meter
from meters.schema import Checked, parse_items

log = logging.getLogger(__name__)


# One decoder per process: json.loads() with these options would build a new one (and its scanner) per call.
_JSON = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def _token(request: HttpRequest) -> str:
    # META rather than request.headers, which would build a dict of every header for two lookups.
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


Parsed = tuple[list[tuple[int, Checked]], list[dict]]  # (well-formed readings, rejections)


def _parse(request: HttpRequest) -> Parsed | JsonResponse:
    """Everything about the request body, checked before any lock or transaction.

    A client that sends its body slowly (or declares more than it sends) keeps this worker waiting
    here, but never the meter's row lock nor a database transaction; and the body's size is bounded
    before a byte is read.
    """
    if request.content_type.lower() != "application/json":
        return error(415, "Content-Type must be application/json")
    declared = request.META.get("CONTENT_LENGTH", "0")
    if not (declared.isascii() and declared.isdigit()):
        return error(400, "Content-Length must be a whole number of bytes")
    if int(declared) > settings.INGEST_MAX_BODY_BYTES:
        return error(413, f"request body is over {settings.INGEST_MAX_BODY_BYTES} bytes")
    try:
        body = request.body
    except (OSError, UnreadablePostError):
        return error(400, "request body could not be read")
    try:
        # What json.loads() does with bytes: detect UTF-8, -16 or -32, then decode.
        payload = _JSON.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, RecursionError):
        return error(400, "body is not valid JSON", code="invalid_json")
    if isinstance(payload, dict) and "readings" in payload:
        if set(payload) != {"readings"} or not isinstance(payload["readings"], list):
            return error(400, 'expected {"readings": [...]} with a list and nothing else', code="invalid_body")
        items = payload["readings"]
    elif isinstance(payload, dict):
        items = [payload]
    else:
        return error(400, 'expected a JSON object: {"readings": [...]} or one reading', code="invalid_body")
    if not items:
        return error(400, "readings is empty", code="invalid_body")
    if len(items) > settings.INGEST_MAX_READINGS:
        return error(413, f"at most {settings.INGEST_MAX_READINGS} readings per request")
    return parse_items(items)


@csrf_exempt
def readings(request: HttpRequest) -> JsonResponse:
    if request.method != "POST":
        return error(405, "use POST", Allow="POST")
    parsed = _parse(request)
    now = timezone.now()  # after the body: a slow client must not make the clock checks stale
    token = _token(request)
    try:
        if not isinstance(parsed, JsonResponse) and (answer := fastpath.ingest(token, *parsed, now)) is not None:
            return answer
        with transaction.atomic():
            return _receive(token, parsed, now)
    except DatabaseError:
        # Nothing was committed; the meter keeps its readings and sends them again.
        log.exception("ingest_failed")
        return error(503, "temporarily unable to store readings, retry later", Retry_After="30")


def _receive(token: str, parsed: Parsed | JsonResponse, now) -> JsonResponse:
    """Authenticate, charge the meter's budget, ingest: under the meter's lock, the body already read.

    A bad body is answered only after the token (401 first) and the budget: a meter sending garbage
    in a loop is slowed down like any other.
    """
    meter = Meter.for_token(token, lock=True) if token else None
    if meter is None:
        return error(
            401, "missing or invalid meter token", code="invalid_token", WWW_Authenticate='Bearer realm="meters"'
        )
    wait = ratelimit.charge(meter, now)
    if wait is not None:
        return error(429, "too many requests for this meter", Retry_After=str(wait))
    if isinstance(parsed, JsonResponse):
        meter.save_contact(now)
        return parsed
    valid, rejected = parsed
    outcome = ingest_locked(meter, valid, now, trusted=False)
    if outcome.accepted:
        usage_changed(meter.household_id)
    outcome.rejected.extend(rejected)
    _count(outcome.accepted, outcome.duplicates, len(outcome.rejected))
    if outcome.rejected:
        _rejected(outcome.rejected, now)
        log.info(
            "ingest meter=%s accepted=%d duplicates=%d rejected=%d",
            meter.pk,
            outcome.accepted,
            outcome.duplicates,
            len(outcome.rejected),
        )
    return JsonResponse(outcome.as_json())


def _count(accepted: int, duplicates: int, rejected: int) -> None:
    """Count the outcome for /metrics once it is committed: a transaction that fails answers 503 and
    the meter sends the readings again, which must not count them twice."""

    def count() -> None:
        metrics.ACCEPTED.inc(accepted)
        metrics.DUPLICATE.inc(duplicates)
        metrics.REJECTED.inc(rejected)

    transaction.on_commit(count)


def _rejected(rejected: list[dict], now) -> None:
    """Count the rejections by code through settings.INGEST_REJECTED_HOOK (the staff status page).

    After the commit: the counters are rows every meter shares, so no meter's transaction may hold
    one locked. robust: a failing count is logged, never answered.
    """
    if path := getattr(settings, "INGEST_REJECTED_HOOK", ""):
        codes = [item["code"] for item in rejected]
        transaction.on_commit(lambda: load_hook(path)(codes, now), robust=True)
