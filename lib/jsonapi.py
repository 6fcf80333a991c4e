"""The JSON answers of /api/: every error is ``{"error": {"code": "...", "message": "..."}}``, and strict JSON parsing.

``code`` is stable, for machines (snake case, one per kind of refusal); ``message`` is the sentence for
people and may be reworded. x402's 402 body is the one exception: its ``error`` is a string by that
protocol (docs/openapi.yaml, ``PaymentRequired``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import NoReturn

from django.http import JsonResponse

# The code an error gets when its caller names none: one per status, so a client can branch on it.
CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    431: "headers_too_large",
    500: "server_error",
    503: "unavailable",
}


def code_for(status: int) -> str:
    """The default code of an error status (``http_<status>`` for one without a name here)."""
    return CODES.get(status, f"http_{status}")


def body(status: int, message: str, code: str | None = None) -> dict[str, dict[str, str]]:
    return {"error": {"code": code or code_for(status), "message": message}}


def error(status: int, message: str, *, code: str | None = None, **headers: str) -> JsonResponse:
    """The error body with ``status``; headers by keyword, ``Retry_After="30"`` -> ``Retry-After: 30``."""
    response = JsonResponse(body(status, message, code), status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def default_message(status: int) -> str:
    """A sentence for an error no view wrote (an unknown path, a method, a crash): the status's phrase."""
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return f"HTTP {status}"


def reject_constant(name: str) -> NoReturn:
    """``json.loads(..., parse_constant=reject_constant)``: NaN and Infinity are not JSON (RFC 8259), refuse them."""
    raise ValueError(f"{name} is not valid JSON")
