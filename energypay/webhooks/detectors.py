"""Events that time alone causes, found by a periodic job: arrears starting and ending, meters falling silent.

No single write makes a household fall into arrears (an hour ages past ``arrears_cutoff`` while its
line stays unpaid) or a meter silent (nothing arrives), so no transaction could carry their event.
Instead beat runs ``detect`` every few minutes. Each detector compares what the money words say now
with what it saw last (``ArrearsState``, ``MeterSilence``) and writes the difference and its
events in one transaction, holding its own heartbeat row's lock: two runs at once take turns, and
the second finds nothing left to announce. So each transition fires once, and a crash between
finding and writing loses nothing (the next run finds it again).

- Arrears use ``payments.figures.in_arrears``, the definition every page, column, health check and
  alarm uses: a webhook never disagrees with the admin's arrears column.
- Silence uses the alarms' and the status page's: an active meter not heard from (its last accepted
  request, or its creation if it never spoke) for WEBHOOK_METER_SILENT_HOURS (energypay/freshness.py,
  which the dashboard's silent-meter notice uses too).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Min, OuterRef, Sum

from energypay import eventhook
from energypay.freshness import HEARD_FROM, silent_before
from energypay.ops.models import Heartbeat
from energypay.webhooks import events
from energypay.webhooks.models import ArrearsState, MeterSilence
from meters.models import HourlyUsage, Meter
from payments import figures

log = logging.getLogger(__name__)


def detect(now: datetime) -> dict[str, int]:
    return {"arrears": detect_arrears(now), "silent_meters": detect_silent_meters(now)}


def _hold(job: str, now: datetime) -> None:
    """Take the job's row lock for the rest of the caller's transaction (creating the row the first time)."""
    Heartbeat.beat(job, now)
    Heartbeat.objects.select_for_update().filter(name=job).first()


def detect_arrears(now: datetime) -> int:
    """household.arrears_started for households newly in arrears, household.arrears_cleared for those out of it."""
    with transaction.atomic():
        _hold("webhooks-arrears", now)
        owing = {
            row["household_id"]: row
            for row in HourlyUsage.objects.filter(figures.in_arrears(now))
            .values("household_id")
            .annotate(eur=Sum(figures.line_amount()), since=Min("hour_start"))
            .order_by()
        }
        known = dict(ArrearsState.objects.values_list("household_id", "started_at"))
        started = sorted(set(owing) - set(known))
        cleared = sorted(set(known) - set(owing))
        ArrearsState.objects.bulk_create(
            ArrearsState(household_id=hid, unpaid_since=owing[hid]["since"], started_at=now) for hid in started
        )
        ArrearsState.objects.filter(household_id__in=cleared).delete()
        eventhook.record(
            [
                (
                    events.ARREARS_STARTED,
                    hid,
                    {
                        "household_id": hid,
                        "arrears_eur": str(figures.eur(owing[hid]["eur"])),
                        "unpaid_since": owing[hid]["since"],
                        "started_at": now,
                    },
                )
                for hid in started
            ]
            + [
                (events.ARREARS_CLEARED, hid, {"household_id": hid, "arrears_started_at": known[hid]})
                for hid in cleared
            ]
        )
    if started or cleared:
        log.info("webhook_arrears_detected started=%d cleared=%d", len(started), len(cleared))
    return len(started) + len(cleared)


def detect_silent_meters(now: datetime) -> int:
    """meter.silent, once per silence, for active meters not heard from for WEBHOOK_METER_SILENT_HOURS."""
    hours = settings.WEBHOOK_METER_SILENT_HOURS
    with transaction.atomic():
        _hold("webhooks-silent-meters", now)
        told = MeterSilence.objects.filter(meter=OuterRef("pk"), since=OuterRef("since"))
        new = list(
            Meter.objects.filter(is_active=True)
            .annotate(since=HEARD_FROM)
            .filter(since__lt=silent_before(now))
            .exclude(Exists(told))
            .values("pk", "serial", "household_id", "last_seen_at", "since")
            .order_by("pk")
        )
        if not new:
            return 0
        # A meter silent before, heard from since, and silent again: its old silence makes way for this one.
        MeterSilence.objects.filter(meter_id__in=[row["pk"] for row in new]).delete()
        MeterSilence.objects.bulk_create(
            MeterSilence(meter_id=row["pk"], since=row["since"], notified_at=now) for row in new
        )
        eventhook.record(
            [
                (
                    events.METER_SILENT,
                    row["household_id"],
                    {
                        "meter_id": row["pk"],
                        "serial": row["serial"],
                        "household_id": row["household_id"],
                        "last_seen_at": row["last_seen_at"],
                        "silent_hours": hours,
                    },
                )
                for row in new
            ]
        )
    log.info("webhook_silent_meters_detected meters=%d", len(new))
    return len(new)
