"""Which version and rate price an hour: time-of-use bands in local time, version changes, DST days,
dynamic prices, and the standing charge spread over the hours of a local day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db.models import Sum

from lib.periods import HOUR
from meters.bands import parse_bands
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Household, Meter, Tariff, TariffVersion
from meters.price_import import import_prices
from meters.pricing import TariffSchedule
from meters.schema import ReadingIn

MADRID = "Europe/Madrid"  # CET (UTC+1) in winter, CEST (UTC+2) from the last Sunday of March to that of October
WEEKDAYS, WEEKEND = [0, 1, 2, 3, 4], [5, 6]

OFF_PEAK, PEAK, WEEKEND_RATE = Decimal("0.123400"), Decimal("0.315000"), Decimal("0.150000")
PEAK_BANDS = [
    {"days": WEEKDAYS, "start": 0, "end": 8, "rate": "0.1234"},
    {"days": WEEKDAYS, "start": 8, "end": 22, "rate": "0.315"},
    {"days": WEEKDAYS, "start": 22, "end": 24, "rate": "0.1234"},
    {"days": WEEKEND, "start": 0, "end": 24, "rate": "0.15"},
]
STANDING_CHARGE = Decimal("0.456789")  # EUR/day: splits evenly over no day length


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every household has a user; PBKDF2's deliberate slowness would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def rate_of_local_hour(hour: int) -> Decimal:
    """The rate of the by-hour tariff: 0.1HH, so a rate says which local hour priced it."""
    return Decimal(f"0.1{hour:02d}")


# Every local hour its own band, so DST days show exactly which local hour prices each UTC hour.
BY_HOUR_BANDS = [
    {"days": WEEKDAYS + WEEKEND, "start": hour, "end": hour + 1, "rate": str(rate_of_local_hour(hour))}
    for hour in range(24)
]


def add_version(tariff: Tariff, valid_from: datetime, **fields) -> TariffVersion:
    version = TariffVersion(tariff=tariff, valid_from=valid_from, **fields)
    version.full_clean()
    version.save()
    return version


@pytest.fixture
def peak_tariff(db) -> Tariff:
    tariff = Tariff.objects.create(name="Peak 08-22")
    add_version(
        tariff,
        utc(2020, 1, 1, 0),
        kind=TariffVersion.Kind.TIME_OF_USE,
        bands=PEAK_BANDS,
        standing_charge_per_day=STANDING_CHARGE,
    )
    return tariff


@pytest.fixture
def by_hour_tariff(db) -> Tariff:
    tariff = Tariff.objects.create(name="By local hour")
    add_version(tariff, utc(2020, 1, 1, 0), kind=TariffVersion.Kind.TIME_OF_USE, bands=BY_HOUR_BANDS)
    return tariff


@pytest.fixture
def dynamic_tariff(db) -> Tariff:
    tariff = Tariff.objects.create(name="Day-ahead")
    add_version(tariff, utc(2026, 1, 1, 0), kind=TariffVersion.Kind.DYNAMIC)
    return tariff


def rate_at(tariff: Tariff, hour: datetime, tz_name: str = MADRID) -> Decimal | None:
    return TariffSchedule(tariff, tz_name, hour, hour + HOUR).energy_rate(hour)[1]


def ingest(meter: Meter, *readings: tuple[datetime, str]) -> None:
    items = [(i, ReadingIn(timestamp=moment, energy_kwh=Decimal(kwh))) for i, (moment, kwh) in enumerate(readings)]
    outcome = ingest_readings(meter.pk, items, datetime.now(UTC))
    assert outcome.accepted == len(readings), outcome.rejected


def energy_lines(meter: Meter) -> dict[datetime, HourlyUsage]:
    lines = HourlyUsage.objects.filter(meter=meter, kind=HourlyUsage.Kind.ENERGY)
    return {line.hour_start: line for line in lines}


def standing_lines(household: Household, start: datetime, end: datetime) -> list[HourlyUsage]:
    lines = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.STANDING)
    return list(lines.filter(hour_start__gte=start, hour_start__lt=end))


# --- Time-of-use band edges, in local time -------------------------------------------------------


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        # Wednesday 14 January 2026, CET: local = UTC + 1.
        pytest.param(utc(2026, 1, 14, 6), OFF_PEAK, id="CET local 07:00 is off-peak"),
        pytest.param(utc(2026, 1, 14, 7), PEAK, id="CET local 08:00 is peak"),
        pytest.param(utc(2026, 1, 14, 20), PEAK, id="CET local 21:00 is peak"),
        pytest.param(utc(2026, 1, 14, 21), OFF_PEAK, id="CET local 22:00 is off-peak"),
        # Wednesday 15 July 2026, CEST: local = UTC + 2.
        pytest.param(utc(2026, 7, 15, 5), OFF_PEAK, id="CEST local 07:00 is off-peak"),
        pytest.param(utc(2026, 7, 15, 6), PEAK, id="CEST local 08:00 is peak"),
        pytest.param(utc(2026, 7, 15, 19), PEAK, id="CEST local 21:00 is peak"),
        pytest.param(utc(2026, 7, 15, 20), OFF_PEAK, id="CEST local 22:00 is off-peak"),
    ],
)
def test_weekday_peak_runs_from_local_8_to_22_in_winter_and_in_summer(peak_tariff, hour, expected):
    assert rate_at(peak_tariff, hour) == expected


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        # Friday 16 / Saturday 17 January 2026 (CET).
        pytest.param(utc(2026, 1, 16, 22), OFF_PEAK, id="CET Friday local 23:00 is a weekday"),
        pytest.param(utc(2026, 1, 16, 23), WEEKEND_RATE, id="CET Saturday local 00:00 is weekend, Friday in UTC"),
        pytest.param(utc(2026, 1, 17, 9), WEEKEND_RATE, id="CET Saturday local 10:00 is weekend, not peak"),
        # Sunday 18 / Monday 19 January 2026 (CET).
        pytest.param(utc(2026, 1, 18, 22), WEEKEND_RATE, id="CET Sunday local 23:00 is weekend"),
        pytest.param(utc(2026, 1, 18, 23), OFF_PEAK, id="CET Monday local 00:00 is a weekday, Sunday in UTC"),
        # Friday 17 / Saturday 18 July 2026 (CEST).
        pytest.param(utc(2026, 7, 17, 21), OFF_PEAK, id="CEST Friday local 23:00 is a weekday"),
        pytest.param(utc(2026, 7, 17, 22), WEEKEND_RATE, id="CEST Saturday local 00:00 is weekend, Friday in UTC"),
        pytest.param(utc(2026, 7, 18, 8), WEEKEND_RATE, id="CEST Saturday local 10:00 is weekend, not peak"),
    ],
)
def test_weekend_bands_follow_the_local_weekday_not_the_utc_one(peak_tariff, hour, expected):
    assert rate_at(peak_tariff, hour) == expected


def test_the_same_utc_hour_is_priced_by_the_households_own_time_zone(peak_tariff):
    # 07:00 UTC on Wednesday 14 January: 08:00 in Madrid (peak), 07:00 in London (off-peak).
    hour = utc(2026, 1, 14, 7)

    assert rate_at(peak_tariff, hour, MADRID) == PEAK
    assert rate_at(peak_tariff, hour, "Europe/London") == OFF_PEAK


# --- Tariff version changes ----------------------------------------------------------------------


def test_the_hour_before_a_new_version_is_priced_by_the_old_one_and_its_first_hour_by_the_new(db):
    tariff = Tariff.objects.create(name="Flat, then peak")
    old = add_version(tariff, utc(2020, 1, 1, 0), kind=TariffVersion.Kind.FLAT, flat_rate=Decimal("0.2"))
    # Monday 2 February 2026 00:00 UTC is local 01:00, off-peak.
    new = add_version(tariff, utc(2026, 2, 2, 0), kind=TariffVersion.Kind.TIME_OF_USE, bands=PEAK_BANDS)
    schedule = TariffSchedule(tariff, MADRID, utc(2026, 2, 1, 20), utc(2026, 2, 2, 12))

    assert schedule.energy_rate(utc(2026, 2, 1, 23)) == (old, Decimal("0.200000"))
    assert schedule.energy_rate(utc(2026, 2, 2, 0)) == (new, OFF_PEAK)
    assert schedule.energy_rate(utc(2026, 2, 2, 7)) == (new, PEAK)


def test_an_hour_before_the_first_version_has_no_price(peak_tariff):
    schedule = TariffSchedule(peak_tariff, MADRID, utc(2019, 12, 31, 22), utc(2020, 1, 1, 2))

    assert schedule.energy_rate(utc(2019, 12, 31, 23)) == (None, None)
    assert schedule.standing_charge(utc(2019, 12, 31, 23)) == (None, Decimal("0"))
    assert schedule.energy_rate(utc(2020, 1, 1, 0))[1] == OFF_PEAK


@time_machine.travel(utc(2026, 1, 14, 12), tick=False)
def test_a_version_starting_in_the_future_does_not_affect_past_hours(make_household, make_meter, flat_tariff):
    add_version(flat_tariff, utc(2026, 2, 1, 0), kind=TariffVersion.Kind.FLAT, flat_rate=Decimal("0.99"))
    meter, _ = make_meter(make_household(tariff=flat_tariff))

    ingest(meter, (utc(2026, 1, 14, 9), "10.000"), (utc(2026, 1, 14, 11), "12.000"))

    lines = energy_lines(meter)
    assert sorted(lines) == [utc(2026, 1, 14, 9), utc(2026, 1, 14, 10)]
    current = flat_tariff.versions.get(valid_from=utc(2020, 1, 1, 0))
    for line in lines.values():
        assert (line.tariff_version, line.rate, line.kwh, line.cost_eur) == (
            current,
            Decimal("0.250000"),
            Decimal("1.000000"),
            Decimal("0.250000"),
        )


# --- Days of 23 and 25 hours ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_day", "day_start", "hours"),
    [
        pytest.param("2026-03-29", utc(2026, 3, 28, 23), 23, id="spring forward: 23 hours"),
        pytest.param("2026-10-25", utc(2026, 10, 24, 22), 25, id="fall back: 25 hours"),
        pytest.param("2026-01-14", utc(2026, 1, 13, 23), 24, id="ordinary day: 24 hours"),
    ],
)
def test_a_local_days_standing_charge_lines_add_up_to_exactly_the_daily_charge(
    make_household, make_meter, peak_tariff, local_day, day_start, hours
):
    household = make_household(tariff=peak_tariff, timezone=MADRID)
    meter, _ = make_meter(household)
    day_end = day_start + hours * HOUR
    # Readings every 3 hours from well before the local day to well after it.
    moments = [day_start - 6 * HOUR + step * 3 * HOUR for step in range(hours // 3 + 5)]
    assert moments[0] < day_start and moments[-1] > day_end

    with time_machine.travel(moments[-1] + timedelta(minutes=1), tick=False):
        ingest(meter, *[(moment, f"{100 + step}.000") for step, moment in enumerate(moments)])

    lines = standing_lines(household, day_start, day_end)
    assert len(lines) == hours
    assert sum(line.cost_eur for line in lines) == STANDING_CHARGE
    # Spread fairly: the hours' shares differ by at most a micro-euro.
    assert max(line.cost_eur for line in lines) - min(line.cost_eur for line in lines) <= Decimal("0.000001")


@pytest.mark.parametrize(
    ("day_start", "hours"),
    [
        pytest.param(utc(2026, 3, 28, 23), 23, id="2026-03-29"),
        pytest.param(utc(2026, 10, 24, 22), 25, id="2026-10-25"),
    ],
)
def test_standing_charge_shares_of_a_dst_day_add_up_exactly(peak_tariff, day_start, hours):
    schedule = TariffSchedule(peak_tariff, MADRID, day_start - 2 * HOUR, day_start + (hours + 2) * HOUR)

    shares = [schedule.standing_charge(day_start + i * HOUR)[1] for i in range(hours)]

    assert sum(shares) == STANDING_CHARGE
    # The hours either side belong to other local days, whose own shares are those of 24-hour days.
    assert schedule.standing_charge(day_start - HOUR)[1] in {Decimal("0.019032"), Decimal("0.019033")}


def test_the_repeated_local_hour_02_on_25_october_is_priced_by_local_hour_2_both_times(by_hour_tariff):
    day_start = utc(2026, 10, 24, 22)  # local 00:00 CEST
    schedule = TariffSchedule(by_hour_tariff, MADRID, day_start, day_start + 25 * HOUR)

    rates = [schedule.energy_rate(day_start + i * HOUR)[1] for i in range(25)]

    # UTC 00:00 is 02:00 CEST, UTC 01:00 is 02:00 CET (the clocks went back from 03:00 to 02:00).
    local_hours = [0, 1, 2, 2, *range(3, 24)]
    assert rates == [rate_of_local_hour(hour) for hour in local_hours]


def test_the_missing_local_hour_02_on_29_march_is_never_priced(by_hour_tariff):
    day_start = utc(2026, 3, 28, 23)  # local 00:00 CET
    schedule = TariffSchedule(by_hour_tariff, MADRID, day_start, day_start + 23 * HOUR)

    rates = [schedule.energy_rate(day_start + i * HOUR)[1] for i in range(23)]

    # UTC 01:00 is 03:00 CEST: the clocks jumped from 02:00 to 03:00.
    local_hours = [0, 1, *range(3, 24)]
    assert rates == [rate_of_local_hour(hour) for hour in local_hours]


@time_machine.travel(utc(2026, 10, 25, 3), tick=False)
def test_readings_over_the_repeated_hour_give_two_lines_at_the_rate_of_local_hour_2(
    make_household, make_meter, by_hour_tariff
):
    meter, _ = make_meter(make_household(tariff=by_hour_tariff, timezone=MADRID))

    # Local 01:30 CEST to 02:30 CET: three UTC hours, half an hour, an hour and half an hour.
    ingest(meter, (utc(2026, 10, 24, 23, 30), "500.000"), (utc(2026, 10, 25, 1, 30), "502.000"))

    lines = energy_lines(meter)
    assert {hour: (line.kwh, line.rate, line.cost_eur) for hour, line in lines.items()} == {
        utc(2026, 10, 24, 23): (Decimal("0.500000"), Decimal("0.101000"), Decimal("0.050500")),
        utc(2026, 10, 25, 0): (Decimal("1.000000"), Decimal("0.102000"), Decimal("0.102000")),
        utc(2026, 10, 25, 1): (Decimal("0.500000"), Decimal("0.102000"), Decimal("0.051000")),
    }


# --- End to end: readings across a band edge -----------------------------------------------------


@time_machine.travel(utc(2026, 1, 14, 9), tick=False)
def test_readings_across_a_band_edge_are_priced_hour_by_hour_to_the_micro_euro(make_household, make_meter, peak_tariff):
    household = make_household(tariff=peak_tariff, timezone=MADRID)
    meter, _ = make_meter(household)

    # Wednesday 14 January, local 07:20 to 08:45 (85 minutes), 1.234 kWh across the 08:00 peak edge.
    ingest(meter, (utc(2026, 1, 14, 6, 20), "100.000"), (utc(2026, 1, 14, 7, 45), "101.234"))

    lines = energy_lines(meter)
    version = peak_tariff.versions.get()
    # 40 of the 85 minutes fall before 08:00: 1.234 * 40/85 = 0.5807058... kWh, rounded to 0.580706.
    off_peak = lines[utc(2026, 1, 14, 6)]
    assert (off_peak.tariff_version, off_peak.kwh, off_peak.rate) == (version, Decimal("0.580706"), OFF_PEAK)
    assert off_peak.cost_eur == Decimal("0.071659")  # 0.580706 * 0.1234 = 0.07165912...
    # The other 45 minutes: 1.234 - 0.580706 = 0.653294 kWh.
    peak = lines[utc(2026, 1, 14, 7)]
    assert (peak.tariff_version, peak.kwh, peak.rate) == (version, Decimal("0.653294"), PEAK)
    assert peak.cost_eur == Decimal("0.205788")  # 0.653294 * 0.315 = 0.20578761
    # Both hours also carry their share of the standing charge (a 24-hour day).
    standing = standing_lines(household, utc(2026, 1, 14, 6), utc(2026, 1, 14, 8))
    assert len(standing) == 2
    assert {line.cost_eur for line in standing} <= {Decimal("0.019032"), Decimal("0.019033")}


# --- Dynamic prices ------------------------------------------------------------------------------


@time_machine.travel(utc(2026, 1, 14, 12, 30), tick=False)
def test_an_hour_without_a_dynamic_price_waits_unpriced_until_its_price_is_imported(
    make_household, make_meter, dynamic_tariff
):
    version = dynamic_tariff.versions.get()
    assert import_prices(version, "hour_start,rate_eur_per_kwh\n2026-01-14T10:00:00Z,0.2\n").errors == []
    meter, _ = make_meter(make_household(tariff=dynamic_tariff))

    ingest(meter, (utc(2026, 1, 14, 10), "10.000"), (utc(2026, 1, 14, 12), "13.000"))

    priced, waiting = energy_lines(meter)[utc(2026, 1, 14, 10)], energy_lines(meter)[utc(2026, 1, 14, 11)]
    assert (priced.rate, priced.cost_eur) == (Decimal("0.200000"), Decimal("0.300000"))
    assert (waiting.tariff_version, waiting.kwh, waiting.rate, waiting.cost_eur) == (
        version,
        Decimal("1.500000"),
        None,
        None,
    )

    # 12:00 local is 11:00 UTC.
    result = import_prices(version, "hour_start,rate_eur_per_kwh\n2026-01-14T12:00:00+01:00,0.123457\n")

    assert (result.errors, result.created, result.repriced_lines) == ([], 1, 1)
    waiting.refresh_from_db()
    assert (waiting.tariff_version, waiting.rate, waiting.cost_eur) == (
        version,
        Decimal("0.123457"),
        Decimal("0.185186"),  # 1.5 * 0.123457 = 0.1851855, rounded half up
    )
    priced.refresh_from_db()
    assert (priced.rate, priced.cost_eur) == (Decimal("0.200000"), Decimal("0.300000"))


def test_total_cost_of_a_household_is_the_sum_of_its_lines(make_household, make_meter, peak_tariff):
    household = make_household(tariff=peak_tariff)
    meter, _ = make_meter(household)
    with time_machine.travel(utc(2026, 1, 15, 0), tick=False):
        ingest(meter, (utc(2026, 1, 13, 23), "0.000"), (utc(2026, 1, 14, 23), "24.000"))

    day = HourlyUsage.objects.filter(household=household, hour_start__gte=utc(2026, 1, 13, 23))
    energy = day.filter(kind=HourlyUsage.Kind.ENERGY).aggregate(total=Sum("cost_eur"))["total"]
    standing = day.filter(kind=HourlyUsage.Kind.STANDING).aggregate(total=Sum("cost_eur"))["total"]

    # One kWh an hour for a whole Wednesday: 8 + 2 off-peak hours, 14 peak hours.
    assert energy == 10 * OFF_PEAK + 14 * PEAK
    assert standing == STANDING_CHARGE


# --- TariffVersion.clean and parse_bands ---------------------------------------------------------


def test_a_version_must_start_on_the_hour(flat_tariff):
    version = TariffVersion(
        tariff=flat_tariff, valid_from=utc(2026, 3, 1, 10, 30), kind=TariffVersion.Kind.FLAT, flat_rate=Decimal("1")
    )

    with pytest.raises(ValidationError) as error:
        version.full_clean()

    assert error.value.message_dict == {"valid_from": ["A tariff version must start on the hour."]}


def test_a_flat_version_needs_a_rate(flat_tariff):
    version = TariffVersion(tariff=flat_tariff, valid_from=utc(2026, 3, 1, 10), kind=TariffVersion.Kind.FLAT)

    with pytest.raises(ValidationError) as error:
        version.full_clean()

    assert error.value.message_dict == {"flat_rate": ["A flat tariff needs a rate."]}


def replace_band(index: int, **changes) -> list[dict]:
    bands = [dict(band) for band in PEAK_BANDS]
    bands[index].update(changes)
    return bands


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        pytest.param(PEAK_BANDS[:3], "No band covers Saturday (5) 00:00-01:00.", id="weekend missing"),
        pytest.param(replace_band(1, end=21), "No band covers Monday (0) 21:00-22:00.", id="gap between bands"),
        pytest.param(
            replace_band(1, start=7), "Bands 1 and 2 both cover Monday (0) 07:00-08:00.", id="overlapping bands"
        ),
        pytest.param(
            [*PEAK_BANDS, {"days": [6], "start": 12, "end": 13, "rate": "0.5"}],
            "Bands 4 and 5 both cover Sunday (6) 12:00-13:00.",
            id="a weekday covered twice",
        ),
        pytest.param(
            replace_band(2, end=25),
            "Band 3: start and end must be whole hours with 0 <= start < end <= 24.",
            id="end after midnight",
        ),
        pytest.param(
            replace_band(1, start=22, end=8),
            "Band 2: start and end must be whole hours with 0 <= start < end <= 24.",
            id="start after end",
        ),
        pytest.param(
            replace_band(1, start=8.5),
            "Band 2: start and end must be whole hours with 0 <= start < end <= 24.",
            id="half hour",
        ),
        pytest.param(
            replace_band(0, start=-1),
            "Band 1: start and end must be whole hours with 0 <= start < end <= 24.",
            id="negative hour",
        ),
        pytest.param(
            replace_band(3, days=[5, 7]),
            "Band 4: days must be weekday numbers 0 (Monday) to 6 (Sunday).",
            id="weekday 7",
        ),
        pytest.param(replace_band(3, days=[5, 5, 6]), "Band 4: days lists a weekday twice.", id="weekday repeated"),
        pytest.param(
            replace_band(1, rate="-0.1"), "Band 2: rate must be between 0 and 999.999999 EUR/kWh.", id="negative rate"
        ),
        pytest.param(
            replace_band(1, rate="0.1234567"), "Band 2: rate must have at most 6 decimal places.", id="7 decimals"
        ),
        pytest.param(
            replace_band(1, rate="1000"),
            "Band 2: rate must be between 0 and 999.999999 EUR/kWh.",
            id="rate too large for the column",
        ),
        pytest.param(replace_band(1, rate="cheap"), "Band 2: rate must be a decimal number of EUR/kWh.", id="text"),
        pytest.param(replace_band(1, rate=True), "Band 2: rate must be a decimal number of EUR/kWh.", id="boolean"),
        pytest.param(
            [{"days": WEEKDAYS, "start": 0, "end": 24}],
            "Band 1 must have exactly days, start, end and rate.",
            id="no rate",
        ),
        pytest.param([], "Time-of-use bands must be a non-empty list.", id="no bands"),
        pytest.param({"days": WEEKDAYS}, "Time-of-use bands must be a non-empty list.", id="not a list"),
    ],
)
def test_bad_time_of_use_bands_are_rejected_with_a_clear_message(flat_tariff, bands, message):
    version = TariffVersion(
        tariff=flat_tariff, valid_from=utc(2026, 3, 1, 0), kind=TariffVersion.Kind.TIME_OF_USE, bands=bands
    )

    with pytest.raises(ValidationError) as error:
        version.full_clean()

    assert error.value.message_dict == {"bands": [message]}


def test_good_bands_parse_with_exact_decimal_rates():
    bands = parse_bands([*PEAK_BANDS[:3], {"days": WEEKEND, "start": 0, "end": 24, "rate": 0.15}])

    assert [band.rate for band in bands] == [OFF_PEAK, PEAK, OFF_PEAK, WEEKEND_RATE]
    assert bands[3].days == frozenset(WEEKEND)
