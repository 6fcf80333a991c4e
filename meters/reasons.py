"""Why ingest refused a reading: stable dotted codes, and the one place their sentences are written.

Codes cross module boundaries (the API answer, settings.INGEST_REJECTED_HOOK, the status page's
counters); sentences are rendered from a code and its parameters here, at the edge, and nowhere else
(docs/architecture.md, "Events: codes, not sentences"). A code never changes meaning once meters and
dashboards rely on it; add a new one instead. docs/ingest.md lists them.
"""

from __future__ import annotations

from django.conf import settings

ISO_EXAMPLE = "2026-11-22T10:15:00Z"

# code -> sentence template; parameters are filled in with str.format.
SENTENCES: dict[str, str] = {
    # The shape of one reading (meters/schema.py).
    "reading.not_an_object": "each reading must be an object with timestamp and energy_kwh",
    "reading.missing_field": "{field} is required",
    "reading.unknown_field": "unknown field {field!r}",
    "reading.malformed": "{field}: {detail}",
    "reading.timestamp_not_text": "timestamp must be an ISO 8601 date-time string",
    "reading.bad_timestamp": f"timestamp must be an ISO 8601 date-time, e.g. {ISO_EXAMPLE}",
    "reading.naive": "timestamp must include a time zone, e.g. 'Z' or '+01:00'",
    "reading.not_a_number": "energy_kwh must be a number or a decimal string",
    "reading.not_finite": "energy_kwh must be a finite number",
    "reading.negative": "energy_kwh must not be negative",
    "reading.too_precise": "energy_kwh has more than 3 decimal places",
    "reading.too_large": "energy_kwh is too large",
    # The reading's time against the clock and the meter's billing window (meters/ingest.py).
    "reading.future": "timestamp is more than {minutes} minutes in the future",
    "reading.out_of_range": (
        "timestamp is outside what this meter may report: from {days} days before its installation to now"
    ),
    "reading.before_installation": (
        "timestamp is before this meter's installation ({installed} UTC): kept for staff review, not billed"
    ),
    "reading.too_old": "timestamp is more than {days} days old: kept for staff review, not billed",
    # The reading against the meter's other readings.
    "reading.conflict": "conflicts with the stored reading of {stored} kWh at this timestamp",
    "reading.max_power": "implies {power} kW {where}, above this meter's maximum of {maximum} kW",
}


def sentence(code: str, **params: object) -> str:
    """The sentence for ``code``; a few parameters come from settings so that no caller repeats them."""
    if code == "reading.future":
        params.setdefault("minutes", f"{settings.INGEST_FUTURE_TOLERANCE.total_seconds() / 60:g}")
    if code in {"reading.too_old", "reading.out_of_range"}:
        params.setdefault("days", settings.INGEST_BACKFILL_DAYS)
    return SENTENCES[code].format(**params)


def rejection(index: int, code: str, **params: object) -> dict:
    """One item of an answer's ``rejected`` list."""
    return {"index": index, "code": code, "error": sentence(code, **params)}
