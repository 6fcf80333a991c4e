"""Concurrent requests for one meter: every reading counts once and usage matches the sorted stream."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from lib.interpolation import hourly_energy
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Reading
from meters.schema import ReadingIn

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks are what is under test; SQLite serializes all writers"
)


@pytest.mark.django_db(transaction=True)
def test_overlapping_batches_from_many_threads_count_each_reading_once(make_meter):
    meter, _ = make_meter()
    start = datetime(2026, 11, 1, tzinfo=UTC)
    history = [(start + timedelta(minutes=15 * i), Decimal(i * 250) / 1000) for i in range(200)]
    rng = random.Random(7)
    batches = [rng.sample(history, 60) for _ in range(12)] + [history]
    rng.shuffle(batches)
    outcomes, errors = [], []

    def send(batch) -> None:
        try:
            items = [(i, ReadingIn(timestamp=t, energy_kwh=kwh)) for i, (t, kwh) in enumerate(batch)]
            outcomes.append(ingest_readings(meter.pk, items, timezone.now()))
        except Exception as error:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sum(o.accepted for o in outcomes) == len(history) == Reading.objects.filter(meter=meter).count()
    assert sum(o.duplicates for o in outcomes) == sum(len(b) for b in batches) - len(history)
    usage: dict[datetime, Decimal] = {}
    for line in HourlyUsage.objects.filter(meter=meter):
        usage[line.hour_start] = usage.get(line.hour_start, Decimal(0)) + line.kwh
    assert {h: kwh for h, kwh in usage.items() if kwh} == hourly_energy(history)
