"""How fresh a household's figures are: its meters' last reading, and which of them are silent.

A meter is silent when it has not been heard from (its last accepted request, or its creation if it
never spoke) for ``WEBHOOK_METER_SILENT_HOURS``: the same words the ``meter.silent`` webhook
(energypay/webhooks/detectors.py) uses, so the dashboard warns when the webhook fires.

What a silence means for the bill (docs/billing.md): the hours since the last reading carry no
energy line until a reading arrives; the standing charge still accrues every hour (beat's
``meters.tasks.accrue_standing``). The next reading's energy is then spread over the silent hours in
proportion to time, priced at each hour's tariff, and paid with the next hourly payment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models.functions import Coalesce
from django.utils.timesince import timesince

from lib.periods import local_date
from meters.models import Household, Meter

# When a meter was last heard from: its last accepted request, or its creation if it never spoke.
HEARD_FROM = Coalesce("last_seen_at", "created_at")


def silent_before(now: datetime) -> datetime:
    """Active meters not heard from since this instant are silent."""
    return now - timedelta(hours=settings.WEBHOOK_METER_SILENT_HOURS)


@dataclass(frozen=True)
class SilentMeter:
    serial: str
    since: datetime  # last heard from
    last_reading_at: datetime | None


@dataclass(frozen=True)
class Freshness:
    last_reading_at: datetime | None  # the newest reading of the household's active meters
    meters: int  # active meters
    silent: list[SilentMeter]
    today: bool  # the newest reading is of the household's today
    ago: str  # how long ago the newest reading was, in the reader's language ("12 minutes"); "" without one
    silent_hours: int  # the setting, for the sentence


def freshness(household: Household, now: datetime) -> Freshness:
    """One query: the household's active meters with their last reading and last contact."""
    cutoff = silent_before(now)
    rows = list(
        Meter.objects.filter(household=household, is_active=True)
        .annotate(heard_from=HEARD_FROM)
        .values_list("serial", "last_reading_at", "heard_from", named=True)
        .order_by("serial")
    )
    readings = [row.last_reading_at for row in rows if row.last_reading_at is not None]
    last = max(readings, default=None)
    return Freshness(
        last_reading_at=last,
        meters=len(rows),
        silent=[
            SilentMeter(row.serial, row.heard_from, row.last_reading_at) for row in rows if row.heard_from < cutoff
        ],
        today=last is not None and local_date(last, household.timezone) == local_date(now, household.timezone),
        ago="" if last is None else timesince(last, now, depth=1),
        silent_hours=settings.WEBHOOK_METER_SILENT_HOURS,
    )
