"""The JSON answers of /api/: every error is {"error": "..."}, and strict JSON parsing."""

from __future__ import annotations

from typing import NoReturn

from django.http import JsonResponse


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """``{"error": message}`` with ``status``; headers by keyword, ``Retry_After="30"`` -> ``Retry-After: 30``."""
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def reject_constant(name: str) -> NoReturn:
    """``json.loads(..., parse_constant=reject_constant)``: NaN and Infinity are not JSON (RFC 8259), refuse them."""
    raise ValueError(f"{name} is not valid JSON")
