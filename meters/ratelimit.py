"""A per-meter request budget, counted in the shared cache (Redis in production)."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache

WINDOW_SECONDS = 60


def retry_after(meter_id: int) -> int | None:
    """Count one request; return seconds to wait when the meter is over its budget, else None."""
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = f"ingest-rate:{meter_id}:{window}"
    if cache.add(key, 1, timeout=WINDOW_SECONDS + 5):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=WINDOW_SECONDS + 5)
            count = 1
    if count <= settings.INGEST_RATE_LIMIT_PER_MINUTE:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
