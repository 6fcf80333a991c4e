"""``GET /api/v1/community``: the community comparison for machines, paid over HTTP 402.

x402 versions 1 and 2 in their shapes (docs/architecture.md, "HTTP 402"; docs/paywall.md). Version 1
pays with ``X-PAYMENT`` and is answered ``X-PAYMENT-RESPONSE``; version 2 pays with
``PAYMENT-SIGNATURE`` (its PaymentPayload carries the requirements it ``accepted``, which must be the
ones offered now) and is answered ``PAYMENT-RESPONSE``. Every 402 carries version 2's
``PAYMENT-REQUIRED`` header; its body is version 1's, or version 2's to a request that paid with it.
The BSV scheme, the redemption and the token are the same in both.

x402 has no BSV scheme; this one is ``exact`` on network ``bsv:<BSV_NETWORK>`` with the payload
``{"transaction": "<raw transaction hex>"}``: a signed transaction paying at least the amount
(``maxAmountRequired`` in v1, ``amount`` in v2) in satoshis to ``payTo`` in P2PKH outputs. The server
checks it, broadcasts it and answers with the data and the payment response, which carries the access
token (``accessToken``, also in the body). From then on the client sends
``Authorization: Bearer <token>`` until the pass ends. The payment itself is redeemed once: it is
public on the chain, so offered again it is refused unless the payer proves its key
(``X-PAYMENT-PROOF``, which replaces the token). Anything wrong with a header is a 402 with the
reason; a network that does not answer is a 503 with Retry-After (send the same payment again).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lib import jsonapi
from lib.jsonapi import reject_constant
from payments import community as stats
from payments import keys, passes
from payments.models import CommunityPass
from payments.networks import get_network

log = logging.getLogger(__name__)

X402_VERSION = 1
X402_V2 = 2
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_REQUIRED = "PAYMENT-REQUIRED"
PAYMENT_RESPONSE = "PAYMENT-RESPONSE"
MAX_TIMEOUT_SECONDS = 60
MAX_HEADER_CHARS = 100_000  # base64 of a transaction of ~75 kB; a real payment is well under 1 kB
RETRY_AFTER_SECONDS = "10"
DESCRIPTION = "Average household electricity use and cost by local hour of day, last 30 days"


def network_name() -> str:
    return f"bsv:{settings.BSV_NETWORK}"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    transaction: str = Field(min_length=2, max_length=2 * passes.MAX_TX_BYTES)


class PaymentHeader(BaseModel):
    """The decoded X-PAYMENT header (x402 v1 PaymentPayload)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x402Version: Literal[1]
    scheme: Literal["exact"]
    network: str = Field(max_length=40)
    payload: _Payload


class ProofHeader(BaseModel):
    """The decoded X-PAYMENT-PROOF header: the payer's signature over proof_text(txid, signedAt)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    signedAt: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")
    signature: str = Field(min_length=1, max_length=200)


class _Accepted(BaseModel):
    """x402 v2 PaymentRequirements, as the client echoes the one it pays for."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scheme: str = Field(max_length=40)
    network: str = Field(max_length=40)
    asset: str = Field(max_length=40)
    amount: str = Field(max_length=40)
    payTo: str = Field(max_length=100)
    maxTimeoutSeconds: int
    extra: dict[str, Any] = Field(default_factory=dict)


class SignatureHeader(BaseModel):
    """The decoded PAYMENT-SIGNATURE header (x402 v2 PaymentPayload)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    x402Version: Literal[2]
    payload: _Payload
    accepted: _Accepted
    resource: dict[str, Any] | None = None
    extensions: dict[str, Any] | None = None


_Model = TypeVar("_Model", bound=BaseModel)


class BadHeader(Exception):
    pass


def _decode_json_header(name: str, value: str, model: type[_Model]) -> _Model:
    """Strictly decode a header that is base64 (standard alphabet, padded) of UTF-8 JSON of ``model``'s shape."""
    if len(value) > MAX_HEADER_CHARS:
        raise BadHeader(f"{name} is over {MAX_HEADER_CHARS} characters")
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadHeader(f"{name} is not base64 of UTF-8 text") from None
    try:
        data = json.loads(text, parse_constant=reject_constant)
    except (ValueError, RecursionError):
        raise BadHeader(f"{name} does not decode to JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or name
        raise BadHeader(f"{name} {where}: {first['msg']}") from None


def decode_header(value: str) -> PaymentHeader:
    """Strictly decode X-PAYMENT: base64 of UTF-8 JSON, the x402 v1 shape, this server's network."""
    header = _decode_json_header("X-PAYMENT", value, PaymentHeader)
    if header.network != network_name():
        raise BadHeader(f"X-PAYMENT network is {header.network!r}; this server takes {network_name()!r}")
    return header


def decode_signature(value: str) -> SignatureHeader:
    """Strictly decode PAYMENT-SIGNATURE: base64 of UTF-8 JSON, the x402 v2 shape, requirements offered now.

    As x402's own servers match them: the core terms equal (scheme, network, amount, asset, payTo,
    maxTimeoutSeconds) and the offered ``extra`` contained in the accepted one. A price changed since
    the 402 is refused with the new requirements, never charged at the old one.
    """
    header = _decode_json_header(PAYMENT_SIGNATURE, value, SignatureHeader)
    if header.accepted.network != network_name():
        raise BadHeader(
            f"{PAYMENT_SIGNATURE} network is {header.accepted.network!r}; this server takes {network_name()!r}"
        )
    offered, accepted = requirements_v2(), header.accepted.model_dump()
    different = [name for name in offered if name != "extra" and accepted[name] != offered[name]]
    different += [f"extra.{key}" for key, value in offered["extra"].items() if accepted["extra"].get(key) != value]
    if different:
        raise BadHeader(
            f"{PAYMENT_SIGNATURE} accepted is not what this server asks for now ({', '.join(different)}); "
            f"pay the requirements of {PAYMENT_REQUIRED}"
        )
    return header


def decode_proof(value: str | None) -> passes.Proof | None:
    """Decode X-PAYMENT-PROOF, if sent; its signature is checked against the payment (passes.check_proof)."""
    if value is None:
        return None
    header = _decode_json_header("X-PAYMENT-PROOF", value, ProofHeader)
    try:
        signed_at = datetime.strptime(header.signedAt, passes.PROOF_TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise BadHeader("X-PAYMENT-PROOF signedAt is not a UTC time (YYYY-MM-DDTHH:MM:SSZ)") from None
    return passes.Proof(signed_at=signed_at, signature=header.signature)


def bearer_pass(authorization: str, now: datetime) -> tuple[CommunityPass | None, str]:
    """The live pass an ``Authorization: Bearer <access token>`` opens, or None and why not."""
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None, "Authorization must be 'Bearer <access token>'; or pay with X-PAYMENT"
    community_pass = CommunityPass.for_token(token.strip())
    if community_pass is None:
        # Unknown, replaced by a proof, or another kind of token: the same answer for all of them.
        return None, "the access token is not valid; pay with X-PAYMENT"
    if not community_pass.grants_access(now):
        return None, (
            f"the access token's pass ended at {community_pass.valid_until:{passes.PROOF_TIME_FORMAT}}; "
            "pay with X-PAYMENT"
        )
    return community_pass, ""


def _extra() -> dict[str, Any]:
    return {
        "unit": "satoshi",
        "payload": "transaction: hex of a signed raw transaction with P2PKH outputs to payTo",
        "minFeeSatsPerKb": settings.FEE_SATS_PER_KB,
        "accessDays": settings.COMMUNITY_ACCESS_DAYS,
        "fresh": "the transaction must not be on the network yet; the server broadcasts it",
    }


def requirements(request: HttpRequest) -> dict[str, Any]:
    """What a payment must be (x402 v1 PaymentRequirements)."""
    return {
        "scheme": "exact",
        "network": network_name(),
        "maxAmountRequired": str(settings.COMMUNITY_PRICE_SATS),
        "asset": "BSV",
        "payTo": keys.utility_address(),
        "resource": request.build_absolute_uri(reverse("api-community")),
        "description": DESCRIPTION,
        "mimeType": "application/json",
        "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
        "extra": _extra(),
    }


def requirements_v2() -> dict[str, Any]:
    """The same payment as x402 v2 PaymentRequirements (the resource moved up to PaymentRequired)."""
    return {
        "scheme": "exact",
        "network": network_name(),
        "asset": "BSV",
        "amount": str(settings.COMMUNITY_PRICE_SATS),
        "payTo": keys.utility_address(),
        "maxTimeoutSeconds": MAX_TIMEOUT_SECONDS,
        "extra": _extra(),
    }


def payment_required_v2(request: HttpRequest, reason: str) -> dict[str, Any]:
    """x402 v2 PaymentRequired: what PAYMENT-REQUIRED carries (base64 of this JSON)."""
    resource = {
        "url": request.build_absolute_uri(reverse("api-community")),
        "description": DESCRIPTION,
        "mimeType": "application/json",
    }
    return {"x402Version": X402_V2, "error": reason, "resource": resource, "accepts": [requirements_v2()]}


def payment_required(request: HttpRequest, reason: str, version: int = X402_VERSION) -> JsonResponse:
    """402: the body in the version the request paid with (v1 when it sent none), v2's header always."""
    v2 = payment_required_v2(request, reason)
    body = (
        v2 if version == X402_V2 else {"x402Version": X402_VERSION, "error": reason, "accepts": [requirements(request)]}
    )
    response = JsonResponse(body, status=402)
    response[PAYMENT_REQUIRED] = _b64_json(v2)
    response["Access-Control-Expose-Headers"] = PAYMENT_REQUIRED
    return response


def unavailable(reason: str) -> JsonResponse:
    """503 in the one error shape of /api/ (lib/jsonapi.py), whichever x402 version the request spoke."""
    return jsonapi.error(503, reason, Retry_After=str(RETRY_AFTER_SECONDS))


def payment_response(community_pass: CommunityPass, token: str) -> str:
    """X-PAYMENT-RESPONSE (v1 SettlementResponse, plus ``accessToken``)."""
    settled = {
        "success": True,
        "transaction": community_pass.txid,
        "network": network_name(),
        "payer": community_pass.payer,
        "accessToken": token,
    }
    return _b64_json(settled)


def payment_response_v2(community_pass: CommunityPass, token: str) -> str:
    """PAYMENT-RESPONSE (v2 SettleResponse): the access token in ``extra``, where x402's clients keep it."""
    settled = {
        "success": True,
        "transaction": community_pass.txid,
        "network": network_name(),
        "payer": community_pass.payer,
        "amount": str(community_pass.satoshis),
        "extra": {"accessToken": token},
    }
    return _b64_json(settled)


def _b64_json(value: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def community_data(request: HttpRequest, community_pass: CommunityPass, now) -> dict[str, Any]:
    since, until = stats.window(now)
    return {
        "resource": request.build_absolute_uri(reverse("api-community")),
        "description": DESCRIPTION,
        "since": since.isoformat().replace("+00:00", "Z"),
        "until": until.isoformat().replace("+00:00", "Z"),
        "hourOfDay": "each household's local time",
        "minHouseholds": settings.COMMUNITY_MIN_HOUSEHOLDS,
        "accessUntil": community_pass.valid_until.isoformat().replace("+00:00", "Z"),
        "hours": [
            {
                "hour": hour.hour,
                "shown": hour.kwh is not None,
                "households": hour.households,
                "kwh": str(hour.kwh) if hour.kwh is not None else None,
                "eur": str(hour.eur) if hour.eur is not None else None,
            }
            for hour in stats.community_day(now)
        ],
    }


@never_cache  # a paid answer must not be served from a shared cache to whoever asks next
def community(request: HttpRequest) -> JsonResponse:
    """A live access token answers at once; else a payment (x402 v1 or v2) is redeemed once, for a new token."""
    if request.method not in ("GET", "HEAD"):
        # JSON like every other answer of the API (require_safe would send an empty HTML 405).
        return jsonapi.error(405, "use GET", Allow="GET, HEAD")
    now = timezone.now()
    refused = f"X-PAYMENT (x402 v1) or {PAYMENT_SIGNATURE} (x402 v2) header is required"
    authorization = request.headers.get("Authorization")
    v1, v2 = request.headers.get("X-PAYMENT"), request.headers.get(PAYMENT_SIGNATURE)
    version = X402_V2 if v2 is not None else X402_VERSION
    if authorization is not None:
        try:
            community_pass, refused = bearer_pass(authorization, now)
            if community_pass is not None:
                # Already paid: any payment sent too is left untouched (nothing is charged).
                return JsonResponse(community_data(request, community_pass, now))
        except DatabaseError:
            log.exception("x402_token_failed")
            return unavailable("temporarily unable to check the access token; send the same request again")
    if v1 is None and v2 is None:
        return payment_required(request, refused)
    if v1 is not None and v2 is not None:
        return payment_required(
            request, f"send X-PAYMENT (x402 v1) or {PAYMENT_SIGNATURE} (x402 v2), not both", version
        )
    if v2 is not None and len(v2) > settings.API_MAX_PAYMENT_HEADER_BYTES:
        # X-PAYMENT's limit, which the header middleware holds for v1 (docs/openapi.yaml: 431).
        return jsonapi.error(431, f"{PAYMENT_SIGNATURE} is over {settings.API_MAX_PAYMENT_HEADER_BYTES} bytes")
    try:
        header = decode_signature(v2) if v2 is not None else decode_header(v1)
        proof = decode_proof(request.headers.get("X-PAYMENT-PROOF"))
        payment = passes.read_payment(header.payload.transaction)
        community_pass = passes.redeem(payment, get_network(), now, proof)
        data = community_data(request, community_pass, now)
        # Last: the token is shown once, so nothing that could fail may come after it is recorded.
        token = passes.issue_token(community_pass, now, proof)
    except BadHeader as error:
        return payment_required(request, str(error), version)
    except passes.PaymentRefused as error:
        log.info("x402_refused version=%d detail=%s", version, error)
        return payment_required(request, str(error), version)
    except passes.NetworkBusy as error:
        return unavailable(str(error))
    except DatabaseError:
        # Nothing was recorded that a retry of the same payment would not find again (no token yet).
        log.exception("x402_failed")
        return unavailable("temporarily unable to record the payment; send the same payment again")
    response = JsonResponse(data | {"accessToken": token})
    if version == X402_V2:
        response[PAYMENT_RESPONSE] = payment_response_v2(community_pass, token)
        response["Access-Control-Expose-Headers"] = PAYMENT_RESPONSE
    else:
        response["X-PAYMENT-RESPONSE"] = payment_response(community_pass, token)
        response["Access-Control-Expose-Headers"] = "X-PAYMENT-RESPONSE"
    return response
