"""Rejected readings counted by reason, for the staff status page.

Ingest answers each rejected reading with a sentence (meters/schema.py, meters/ingest.py); here,
and only here, those sentences map to a small fixed set of reasons. meters/api.py calls ``record``
through settings.INGEST_REJECTED_HOOK (meters never imports the project package), after its
transaction commits, and only for requests that had rejections: accepted readings cost nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from energypay.ops.models import RejectionCount
from lib.periods import floor_hour

# code -> label, in the order the status page lists them.
REASONS = {
    "future": "timestamp in the future",
    "naive": "timestamp without time zone",
    "conflict": "conflicts with a stored reading",
    "max_power": "above the meter's max power",
    "not_finite": "not a finite number",
    "negative": "negative register",
    "malformed": "malformed item",
}

# (words in the message, reason); the first match wins. Anything else is a shape error from the
# schema (missing or unknown field, bad type, too many decimals): "malformed".
_MATCHES = (
    ("in the future", "future"),
    ("must include a time zone", "naive"),
    ("conflicts with the stored reading", "conflict"),
    ("above this meter's maximum", "max_power"),
    ("must be a finite number", "not_finite"),
    ("must not be negative", "negative"),
)


def reason_for(message: str) -> str:
    for words, reason in _MATCHES:
        if words in message:
            return reason
    return "malformed"


def record(messages: Iterable[str], now: datetime) -> None:
    """Add one request's rejections to the current hour's counters (one statement)."""
    RejectionCount.add(floor_hour(now), Counter(reason_for(message) for message in messages))
