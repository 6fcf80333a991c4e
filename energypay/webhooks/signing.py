"""Signing as the Standard Webhooks specification says (https://www.standardwebhooks.com/).

Each request carries ``webhook-id`` (the event's message id, the same on every retry),
``webhook-timestamp`` (Unix seconds of this attempt: receivers refuse old ones, so a captured
request cannot be replayed later) and ``webhook-signature``: ``v1,`` + base64 of HMAC-SHA256 over
``id.timestamp.body`` with the secret's key. During a rotation's grace period the old secret signs
too, as a second signature separated by a space; a receiver accepts a request if any one matches.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret): energypay/logging.py redacts whsec_... values
KEY_BYTES = 32


def new_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes (the form receivers' libraries read)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def hint(secret: str) -> str:
    """What staff see of a secret once it was shown: its prefix and last four characters."""
    return f"{SECRET_PREFIX}...{secret[-4:]}"


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(signing_secrets: list[str], message_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The headers of one attempt: the event's id, this attempt's time, a signature per secret."""
    timestamp = int(now.timestamp())
    signatures = " ".join(signature(secret, message_id, timestamp, body) for secret in signing_secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
        "Content-Type": "application/json",
        "User-Agent": "EnergyPay-Webhooks/1",
    }
