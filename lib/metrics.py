"""Prometheus counters that lower floors increment where the thing happens (energypay/metrics.py serves them).

One increment is a lock and an add (in a file-backed page under gunicorn's multiprocess mode): cheap enough
for the ingest path. Names follow Prometheus's conventions: ``energypay_`` prefix, ``_total`` for counters.
"""

from __future__ import annotations

from prometheus_client import Counter

READINGS_INGESTED = Counter(
    "energypay_readings_ingested",
    "Readings meters sent, by outcome: accepted (stored and billed), duplicate, rejected.",
    ["outcome"],
)
ACCEPTED = READINGS_INGESTED.labels("accepted")
DUPLICATE = READINGS_INGESTED.labels("duplicate")
REJECTED = READINGS_INGESTED.labels("rejected")
