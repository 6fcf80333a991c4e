"""Rejected readings counted by reason, for the staff status page.

Ingest answers each rejected reading with a stable dotted code (meters/reasons.py); here, and only
here, codes map to the small fixed set of reasons the status page lists. meters/api.py calls
``record`` through settings.INGEST_REJECTED_HOOK (meters never imports the project package), after
its transaction commits, and only for requests that had rejections: accepted readings cost nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from energypay.ops.models import RejectionCount
from lib.periods import floor_hour

# reason -> label, in the order the status page lists them. A code counts under the reason named by
# its last part ("reading.too_old" -> "too_old"); codes without a reason of their own (the shape
# checks: missing or unknown field, bad type, too many decimals...) count as "malformed".
REASONS = {
    "future": "timestamp in the future",
    "naive": "timestamp without time zone",
    "conflict": "conflicts with a stored reading",
    "max_power": "above the meter's max power",
    "not_finite": "not a finite number",
    "negative": "negative register",
    "too_old": "older than the backfill window (held for review)",
    "before_installation": "before the meter's installation (held for review)",
    "out_of_range": "timestamp out of the meter's range",
    "malformed": "malformed item",
}


def reason_for(code: str) -> str:
    reason = code.removeprefix("reading.")
    return reason if reason != code and reason in REASONS else "malformed"


def record(codes: Iterable[str], now: datetime) -> None:
    """Add one request's rejections to the current hour's counters (one statement)."""
    RejectionCount.add(floor_hour(now), Counter(reason_for(code) for code in codes))
