"""The community comparison's numbers: averages by local hour of day, small buckets hidden."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from meters.models import HourlyUsage
from payments import community

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)  # window: 2026-10-23 14:00 .. 2026-11-22 14:00 UTC
DAY = timedelta(days=1)


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def home(make_meter, make_household):
    """``home(tz)`` -> a household in that zone with one meter; ``use(...)`` adds usage lines."""

    def make(tz: str = "Europe/Madrid"):
        meter, _ = make_meter(make_household(timezone=tz))
        return meter

    return make


def use(meter, hour_start: datetime, kwh: str, eur: str | None = None, *, seq: int = 0, kind: str = "energy") -> None:
    # Only one line per meter and hour is open; the earlier ones of a true-up are settled.
    HourlyUsage.objects.filter(meter=meter, hour_start=hour_start, kind=kind).update(settled_at=NOW)
    HourlyUsage.objects.create(
        household=meter.household,
        meter=meter if kind == "energy" else None,
        kind=kind,
        hour_start=hour_start,
        seq=seq,
        kwh=Decimal(kwh),
        rate=Decimal("0.25"),
        cost_eur=Decimal(eur) if eur is not None else Decimal(kwh) / 4,
    )


def utc(day: int, hour: int, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def test_an_hour_with_five_households_is_shown_with_the_mean_of_their_averages(home):
    meters = [home() for _ in range(5)]
    # 08:00 local in Madrid (UTC+1 in November) is 07:00 UTC.
    use(meters[0], utc(20, 7), "1")
    use(meters[0], utc(21, 7), "3")  # two days: its average is 2
    for meter, kwh in zip(meters[1:], ["2", "3", "4", "5"], strict=True):
        use(meter, utc(20, 7), kwh)
    day = community.community_day(NOW)
    eight = day[8]
    assert (eight.households, eight.kwh) == (5, Decimal("3.2"))  # (2 + 2 + 3 + 4 + 5) / 5
    assert eight.eur == Decimal("0.8")  # cost is a quarter of the kWh here
    assert [hour.hour for hour in day] == list(range(24))
    assert all(hour.kwh is None for hour in day if hour.hour != 8)


def test_an_hour_with_four_households_is_hidden_entirely(home):
    meters = [home() for _ in range(5)]
    for meter in meters:
        use(meter, utc(20, 7), "1")  # 08:00 local: five households
    for meter in meters[:4]:
        use(meter, utc(20, 8), "9")  # 09:00 local: four
    day = community.community_day(NOW)
    assert day[8].kwh == Decimal("1")
    assert (day[9].kwh, day[9].eur, day[9].households) == (None, None, None)  # not even the count


def test_hour_of_day_is_each_households_own_local_time(home):
    madrid = [home("Europe/Madrid") for _ in range(3)]
    new_york = [home("America/New_York") for _ in range(2)]
    for meter in madrid:
        use(meter, utc(20, 7), "1")  # 08:00 in Madrid
    for meter in new_york:
        use(meter, utc(20, 13), "2")  # 08:00 in New York (UTC-5)
    day = community.community_day(NOW)
    assert (day[8].households, day[8].kwh) == (5, Decimal("1.4"))
    assert day[7].kwh is None and day[13].kwh is None


def test_the_local_hour_follows_daylight_saving_time(home):
    meter = home("Europe/Madrid")
    use(meter, utc(24, 6, month=10), "1")  # 08:00 CEST (UTC+2), the day before the clocks go back
    use(meter, utc(10, 7), "3")  # 08:00 CET (UTC+1)
    day = community.household_day(meter.household, NOW)
    assert day[8].kwh == Decimal("2")
    assert day[7].kwh is None and day[6].kwh is None


def test_several_lines_in_one_hour_are_one_hour_of_that_households_day(home, make_meter):
    meter = home()
    second_meter, _ = make_meter(meter.household)
    use(meter, utc(20, 7), "1")
    use(meter, utc(20, 7), "0.5", seq=1)  # a late reading's true-up line
    use(second_meter, utc(20, 7), "1.5")
    use(meter, utc(21, 7), "1")
    day = community.household_day(meter.household, NOW)
    assert day[8].kwh == Decimal("2")  # (3 + 1) kWh over 2 hours


def test_only_energy_lines_of_the_last_30_days_count(home):
    meter = home()
    use(meter, utc(20, 7), "1")
    use(meter, utc(20, 7), "0", eur="0.2", kind="standing")
    use(meter, utc(23, 12, month=10), "50")  # 13:00 local, before the window starts at 14:00 UTC
    use(meter, utc(22, 14), "50")  # the current hour is not closed
    day = community.household_day(meter.household, NOW)
    assert (day[8].kwh, day[8].eur) == (Decimal("1"), Decimal("0.25"))
    assert [hour.hour for hour in day if hour.kwh is not None] == [8]


def test_the_households_own_day_shows_its_hours_even_alone(home):
    meter = home()
    use(meter, utc(20, 7), "1.2", eur="0.3")
    mine = community.household_day(meter.household, NOW)
    assert (mine[8].kwh, mine[8].eur) == (Decimal("1.2"), Decimal("0.3"))
    assert community.community_day(NOW)[8].kwh is None


def test_unpriced_hours_count_for_energy_and_leave_eur_unknown(home):
    meter = home()
    HourlyUsage.objects.create(
        household=meter.household, meter=meter, hour_start=utc(20, 7), kwh=Decimal("1"), cost_eur=None
    )
    mine = community.household_day(meter.household, NOW)
    assert (mine[8].kwh, mine[8].eur) == (Decimal("1"), None)


def test_aggregation_is_in_sql_and_the_community_part_is_cached(home, django_assert_num_queries):
    meters = [home(tz) for tz in ["Europe/Madrid"] * 3 + ["America/New_York", "Asia/Kolkata"]]
    for day in range(1, 21):
        for meter in meters:
            use(meter, utc(day, 7), "1")
    with django_assert_num_queries(1):
        community.household_day(meters[0].household, NOW)
    with django_assert_num_queries(2):  # the zones in use, then one aggregate over all of them
        first = community.community_day(NOW)
    with django_assert_num_queries(0):
        assert community.community_day(NOW) == first
    # Kolkata is UTC+5:30: 07:00 UTC is 12:30 there, in the 12:00 bucket; New York's is 02:00.
    assert first[8].households is None and first[12].households is None


def test_the_cache_is_per_hour(home):
    meters = [home() for _ in range(5)]
    for meter in meters:
        use(meter, utc(20, 7), "1")
    assert community.community_day(NOW)[8].kwh == Decimal("1")
    for meter in meters:
        use(meter, utc(21, 7), "3")
    assert community.community_day(NOW)[8].kwh == Decimal("1")  # cached within the hour
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        assert community.community_day(NOW + timedelta(hours=1))[8].kwh == Decimal("2")
