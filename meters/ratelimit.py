"""A per-meter request budget, counted on the meter's row under the lock ingest holds anyway."""

from __future__ import annotations

import math
from datetime import datetime

from django.conf import settings

from meters.models import Meter

WINDOW_SECONDS = 60


def charge(meter: Meter, now: datetime) -> int | None:
    """Count one request on the (locked) meter; return seconds to wait when over budget, else None.

    The count is saved with the meter's next ``save_contact``; a refused request is not counted.
    """
    moment = now.timestamp()
    window = window_of(now)
    if meter.rate_window != window:
        meter.rate_window, meter.rate_count = window, 0
    if meter.rate_count >= settings.INGEST_RATE_LIMIT_PER_MINUTE:
        return max(1, math.ceil((window + 1) * WINDOW_SECONDS - moment))
    meter.rate_count += 1
    return None


def window_of(now: datetime) -> int:
    """The number of the budget's window ``now`` falls in (the meter row's ``rate_window``)."""
    return int(now.timestamp() // WINDOW_SECONDS)
