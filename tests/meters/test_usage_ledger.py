"""The hourly usage ledger: settled lines stay frozen, late energy becomes adjustments, standing charges accrue once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from meters.ingest import ingest_readings
from meters.models import HourlyUsage, TariffVersion
from meters.schema import ReadingIn
from meters.usage import reopen_lines


def send(meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=f"2026-11-20T{t}:00Z", energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def hour(h: int) -> datetime:
    return datetime(2026, 11, 20, h, tzinfo=UTC)


@pytest.fixture
def meter(make_meter):
    return make_meter()[0]


def test_late_reading_that_leaves_a_settled_hour_unchanged_adds_no_line(meter):
    send(meter, ("10:00", "100"), ("11:00", "101"))  # 1 kWh in hour 10
    settled_at = timezone.now()
    HourlyUsage.objects.filter(meter=meter).update(settled_at=settled_at)

    # A late reading inside the settled hour changes nothing there (still 1 kWh): no adjustment line.
    send(meter, ("10:30", "100.2"), ("12:00", "103"))
    lines = list(HourlyUsage.objects.filter(meter=meter).order_by("hour_start", "seq"))
    assert [(line.hour_start.hour, line.seq, line.kwh, line.cost_eur, line.settled_at) for line in lines] == [
        (10, 0, Decimal("1"), Decimal("0.25"), settled_at),
        (11, 0, Decimal("2"), Decimal("0.5"), None),
    ]


def test_energy_added_to_a_settled_hour_is_paid_by_a_new_open_line(meter):
    send(meter, ("10:00", "100"), ("11:30", "103"))  # 2 kWh in hour 10, 1 kWh in hour 11
    HourlyUsage.objects.filter(meter=meter, hour_start=hour(10)).update(settled_at=timezone.now())

    # The register at 11:00 was really 102.5: hour 10 used 2.5 kWh, hour 11 only 0.5.
    send(meter, ("11:00", "102.5"))
    ten = list(HourlyUsage.objects.filter(meter=meter, hour_start=hour(10)).order_by("seq"))
    assert [(line.seq, line.kwh, line.cost_eur, line.settled_at is None) for line in ten] == [
        (0, Decimal("2"), Decimal("0.5"), False),
        (1, Decimal("0.5"), Decimal("0.125"), True),
    ]
    eleven = HourlyUsage.objects.get(meter=meter, hour_start=hour(11))
    assert (eleven.kwh, eleven.cost_eur) == (Decimal("0.5"), Decimal("0.125"))


def test_adjustment_keeps_the_rate_its_hour_was_settled_at(meter, flat_tariff):
    send(meter, ("10:00", "100"), ("11:30", "103"))
    HourlyUsage.objects.filter(meter=meter, hour_start=hour(10)).update(settled_at=timezone.now())
    # Staff later add a version that starts before hour 10: settled money never gets repriced.
    TariffVersion.objects.create(
        tariff=flat_tariff, valid_from=hour(9), kind=TariffVersion.Kind.FLAT, flat_rate=Decimal("9")
    )
    send(meter, ("11:00", "102.5"))
    adjustment = HourlyUsage.objects.get(meter=meter, hour_start=hour(10), seq=1)
    assert (adjustment.rate, adjustment.cost_eur) == (Decimal("0.25"), Decimal("0.125"))


def test_standing_charge_accrues_once_per_household_hour_across_meters(make_household, make_meter, flat_tariff):
    TariffVersion.objects.filter(tariff=flat_tariff).update(standing_charge_per_day=Decimal("0.48"))
    household = make_household()
    first, _ = make_meter(household)
    second, _ = make_meter(household)
    send(first, ("10:00", "1"), ("12:00", "2"))
    send(second, ("11:00", "5"), ("13:00", "6"))
    standing = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.STANDING).order_by("hour_start")
    assert [(line.hour_start.hour, line.cost_eur) for line in standing] == [
        (10, Decimal("0.02")),
        (11, Decimal("0.02")),
        (12, Decimal("0.02")),
    ]


def test_repeating_the_same_readings_changes_no_line(meter):
    send(meter, ("10:00", "100"), ("10:15", "100.3"), ("11:10", "101"))
    before = list(HourlyUsage.objects.filter(meter=meter).values_list("hour_start", "seq", "kwh", "cost_eur"))
    items = [(0, ReadingIn(timestamp="2026-11-20T10:15:00Z", energy_kwh="100.3"))]
    outcome = ingest_readings(meter.pk, items, timezone.now())
    assert (outcome.accepted, outcome.duplicates) == (0, 1)
    assert list(HourlyUsage.objects.filter(meter=meter).values_list("hour_start", "seq", "kwh", "cost_eur")) == before


def test_reopening_a_month_of_settled_lines_merges_each_later_adjustment_into_its_hour(meter):
    # A month's payment claims ~1,500 lines (energy and standing per hour): SQLite once refused the query.
    start = datetime(2026, 10, 1, tzinfo=UTC)
    month = [start + timedelta(hours=n) for n in range(744)]
    common = {"household": meter.household, "cost_eur": Decimal("0.1"), "settled_at": timezone.now()}
    kinds = [(meter, HourlyUsage.Kind.ENERGY, Decimal("0.5")), (None, HourlyUsage.Kind.STANDING, 0)]
    HourlyUsage.objects.bulk_create(
        HourlyUsage(meter=line_meter, kind=kind, hour_start=moment, kwh=kwh, **common)
        for moment in month
        for line_meter, kind, kwh in kinds
    )
    settled = list(HourlyUsage.objects.values_list("pk", flat=True))
    adjustment = HourlyUsage.objects.create(
        household=meter.household,
        meter=meter,
        kind=HourlyUsage.Kind.ENERGY,
        hour_start=month[100],
        seq=1,
        kwh=Decimal("0.25"),
        cost_eur=Decimal("0.05"),
    )
    reopen_lines(settled)
    lines = HourlyUsage.objects.filter(household=meter.household)
    assert lines.count() == 2 * 744
    assert not lines.filter(settled_at__isnull=False).exists()
    assert not HourlyUsage.objects.filter(pk=adjustment.pk).exists()
    energy = lines.filter(kind=HourlyUsage.Kind.ENERGY).values_list("kwh", "cost_eur")
    assert energy.get(hour_start=month[100]) == (Decimal("0.75"), Decimal("0.15"))
    assert energy.get(hour_start=month[101]) == (Decimal("0.5"), Decimal("0.1"))


def usage_version(meter) -> int:
    meter.household.refresh_from_db()
    return meter.household.usage_version


def test_a_reading_that_changes_no_line_leaves_the_usage_version_and_so_the_cached_chart(meter):
    send(meter, ("10:00", "100"), ("10:15", "101"))
    before = usage_version(meter)
    send(meter, ("10:30", "101"))  # the register did not move, in an hour already accrued
    assert usage_version(meter) == before
    assert HourlyUsage.objects.get(meter=meter, hour_start=hour(10)).kwh == Decimal("1")


def test_a_reading_without_energy_that_accrues_a_new_standing_hour_raises_the_usage_version(meter, flat_tariff):
    TariffVersion.objects.filter(tariff=flat_tariff).update(standing_charge_per_day=Decimal("0.48"))
    send(meter, ("10:00", "100"), ("10:15", "101"))
    before = usage_version(meter)
    send(meter, ("11:30", "101"))  # no energy, but hour 11 now owes its standing charge
    assert usage_version(meter) > before
    standing = HourlyUsage.objects.filter(household=meter.household, kind=HourlyUsage.Kind.STANDING)
    assert sorted(line.hour_start.hour for line in standing) == [10, 11]
