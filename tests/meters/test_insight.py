"""The price hint: what moving each day's 3 costliest hours to its 3 cheapest would have saved.

Figures worked by hand. Madrid is UTC+1 in November: local 10:00 is 09:00 UTC.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from lib.periods import HOUR, local_midnight
from meters.insight import shift_saving
from meters.models import DynamicPrice, HourlyUsage, Meter, Tariff, TariffVersion

_seq = itertools.count()
DAY_START = local_midnight(datetime(2026, 11, 22).date(), "Europe/Madrid")  # 2026-11-21 23:00 UTC
DAY_END = DAY_START + 24 * HOUR


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def add_line(household, hour: datetime, kwh: str, rate: str, *, tax_rate: str = "0"):
    meter = household.meters.first() or Meter.objects.create(serial=f"INS-{household.pk}", household=household)
    cost = Decimal(kwh) * Decimal(rate)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour,
        seq=next(_seq) % 30000,
        kwh=Decimal(kwh),
        rate=Decimal(rate),
        cost_eur=cost,
        tax_rate=Decimal(tax_rate),
        tax_eur=(cost * Decimal(tax_rate)).quantize(Decimal("0.000001")),
    )


@pytest.fixture
def peak_and_valley(db) -> Tariff:
    tariff = Tariff.objects.create(name="Peak and valley")
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=utc(2020, 1, 1),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=[
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 0, "end": 8, "rate": "0.10"},
            {"days": [0, 1, 2, 3, 4, 5, 6], "start": 8, "end": 24, "rate": "0.30"},
        ],
    )
    return tariff


def evening_use(household, tax_rate: str = "0") -> None:
    add_line(household, utc(2026, 11, 22, 18), "2", "0.30", tax_rate=tax_rate)  # 19:00: EUR 0.60
    add_line(household, utc(2026, 11, 22, 19), "1.5", "0.30", tax_rate=tax_rate)  # 20:00: EUR 0.45
    add_line(household, utc(2026, 11, 22, 20), "1", "0.30", tax_rate=tax_rate)  # 21:00: EUR 0.30
    add_line(household, utc(2026, 11, 22, 9), "0.5", "0.30", tax_rate=tax_rate)  # 10:00: EUR 0.15, 4th: stays
    add_line(household, utc(2026, 11, 22, 2), "1", "0.10", tax_rate=tax_rate)  # 03:00: EUR 0.10, already cheap


def test_the_three_costliest_hours_moved_to_the_cheapest_save_their_price_difference(make_household, peak_and_valley):
    household = make_household(tariff=peak_and_valley)
    evening_use(household)
    # 2 x (0.30 - 0.10) + 1.5 x 0.20 + 1 x 0.20 = 0.40 + 0.30 + 0.20
    assert shift_saving(household, DAY_START, DAY_END).saving_eur == Decimal("0.90")


def test_the_saving_includes_the_taxes_on_energy(make_household, peak_and_valley):
    household = make_household(tariff=peak_and_valley)
    evening_use(household, tax_rate="0.21")
    assert shift_saving(household, DAY_START, DAY_END).saving_eur == Decimal("1.09")  # 0.90 x 1.21 = 1.089


def test_each_day_moves_its_own_hours(make_household, peak_and_valley):
    household = make_household(tariff=peak_and_valley)
    evening_use(household)
    add_line(household, utc(2026, 11, 23, 18), "1", "0.30")  # Monday 19:00: 1 x 0.20 more
    assert shift_saving(household, DAY_START, DAY_END + 24 * HOUR).saving_eur == Decimal("1.10")


def test_use_already_in_the_cheapest_hours_saves_nothing(make_household, peak_and_valley):
    household = make_household(tariff=peak_and_valley)
    add_line(household, utc(2026, 11, 22, 2), "3", "0.10")
    hint = shift_saving(household, DAY_START, DAY_END)
    assert hint is not None and hint.saving_eur == Decimal("0.00")


def test_a_flat_tariff_has_no_hint(household):
    add_line(household, utc(2026, 11, 22, 18), "2", "0.25")
    assert shift_saving(household, DAY_START, DAY_END) is None


def test_a_dynamic_tariff_moves_to_its_cheapest_priced_hours(make_household):
    tariff = Tariff.objects.create(name="Spot")
    version = TariffVersion.objects.create(tariff=tariff, valid_from=utc(2026, 1, 1), kind=TariffVersion.Kind.DYNAMIC)
    for hour, rate in enumerate(["0.20", "0.05", "0.08", "0.06", "0.30"]):  # 00:00-04:00 local; others unknown
        DynamicPrice.objects.create(version=version, hour_start=DAY_START + hour * HOUR, rate=Decimal(rate))
    household = make_household(tariff=tariff)
    add_line(household, DAY_START + 4 * HOUR, "2", "0.30")  # 04:00: EUR 0.60 -> 2 x (0.30 - 0.05) = 0.50
    add_line(household, DAY_START, "1", "0.20")  # 00:00: EUR 0.20 -> 1 x (0.20 - 0.06) = 0.14
    add_line(household, DAY_START + HOUR, "1", "0.05")  # 01:00: EUR 0.05 -> 1 x (0.05 - 0.08): no saving
    assert shift_saving(household, DAY_START, DAY_END).saving_eur == Decimal("0.64")
