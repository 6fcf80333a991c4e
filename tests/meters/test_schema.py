"""A reading in the form meters send is checked without pydantic (meters/schema.py ``plain_reading``): the
same values, and whatever it does not take goes to pydantic, which names the problem.

What is compared: for any item the plain check takes, pydantic takes it too, with the same instant, the
same register value and the same stored register; and for any list of items, ``parse_items`` gives the
same readings and the same rejections as pydantic alone did.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from hypothesis import event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from meters.reasons import rejection
from meters.schema import _PLAIN_TIME, PlainReading, ReadingIn, describe, parse_items, plain_reading

PROPERTY = hypothesis_settings(max_examples=500, deadline=None)


def pydantic_only(items: list[object]) -> tuple[list[tuple[int, ReadingIn]], list[dict]]:
    """parse_items as it was before the plain check: every item through pydantic."""
    valid, rejected = [], []
    for index, item in enumerate(items):
        try:
            valid.append((index, ReadingIn.model_validate(item)))
        except ValidationError as error:
            code, params = describe(error)
            rejected.append(rejection(index, code, **params))
    return valid, rejected


def values(valid: list[tuple[int, object]]) -> list[tuple[int, datetime, Decimal, str, Decimal]]:
    return [
        (index, r.utc_timestamp, r.energy_kwh, repr(r.energy_kwh), r.register_kwh)  # repr: 1.50 is not 1.5
        for index, r in valid
    ]


offsets = st.one_of(
    st.just(UTC),
    st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes))),
)
real_times = st.builds(
    lambda moment, offset, style: moment.replace(tzinfo=offset).isoformat(timespec=style).replace("+00:00", "Z"),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offsets,
    st.sampled_from(["seconds", "milliseconds", "microseconds"]),
)
timestamps = st.one_of(
    real_times,
    st.from_regex(_PLAIN_TIME, fullmatch=True),  # mostly no such day, hour or offset
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",  # no UTC instant
            "9999-12-31T23:59:59-01:00",
            "2026-11-22T24:00:00Z",
            "2026-02-29T10:00:00Z",
            "2024-02-29T10:00:00Z",
            "2026-11-22T10:15:60Z",
            "2026-11-22T10:15:00+24:00",
            "2026-11-22T10:15:00-00:60",
            "2026-11-22T10:15:00.1234567Z",
            "2026-11-22T10:15:00",
            "2026-11-22 10:15:00Z",
            "2026-11-22",
            "20261122T101500Z",
        ]
    ),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
registers = st.one_of(
    st.integers(0, 5).flatmap(lambda places: st.decimals(allow_nan=False, allow_infinity=False, places=places)),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.builds(lambda n, places: Decimal(n).scaleb(-places), st.integers(-5, 10**13), st.integers(0, 4)),
    st.integers(-(10**13), 10**13),
    st.from_regex(r"-?[0-9]{1,14}(\.[0-9]{0,5})?", fullmatch=True),
    st.sampled_from(["NaN", "Infinity", " 5", "+5", "1e3", "5.", ".5", "\uff15", "999999999999.999", "1000000000000"]),
    st.sampled_from([Decimal("1E+3"), Decimal("1.2340"), Decimal("-0"), Decimal("0E-10"), Decimal("1E+12")]),
    st.booleans(),
    st.floats(allow_nan=True),
    st.none(),
)
# Readings as meters send them, and near them: these are what the plain check is for.
good_registers = st.one_of(
    st.decimals(min_value=0, max_value=10**12, places=3),
    st.decimals(min_value=0, max_value=10**12, places=4),  # one decimal too many, mostly
    st.integers(0, 10**12),
    st.decimals(min_value=0, max_value=10**12, places=3).map(str),
)
meter_items = st.fixed_dictionaries({"timestamp": real_times, "energy_kwh": good_registers})
items = st.one_of(
    meter_items,
    meter_items,
    meter_items,
    meter_items,
    st.fixed_dictionaries({"timestamp": timestamps, "energy_kwh": registers}),
    st.fixed_dictionaries({"timestamp": timestamps, "energy_kwh": registers, "meter": st.just("x")}),
    st.fixed_dictionaries({"timestamp": timestamps}),
    st.fixed_dictionaries({"energy_kwh": registers, "time": timestamps}),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=5),
)


@PROPERTY
@given(item=items)
@example(item={"timestamp": "2026-11-22T10:15:00Z", "energy_kwh": Decimal("12345.678")})
@example(item={"timestamp": "2026-11-22T10:15:00.5+05:30", "energy_kwh": "100.250"})
@example(item={"timestamp": "2026-11-22T10:15:00Z", "energy_kwh": True})
@example(item={"timestamp": "0001-01-01T00:30:00+01:00", "energy_kwh": 1})
@example(item={"timestamp": "2026-01-01T00:00:00-00:60", "energy_kwh": 0})  # fromisoformat takes it, pydantic not
def test_what_the_plain_check_takes_pydantic_takes_with_the_same_values(item):
    plain = plain_reading(item)
    event("taken by the plain check" if plain else "left to pydantic")
    if plain is None:
        return
    reading = ReadingIn.model_validate(item)  # raises if pydantic refuses what the plain check took
    assert values([(0, plain)]) == values([(0, reading)])


@PROPERTY
@given(batch=st.lists(items, max_size=8))
@example(batch=[{"timestamp": "0001-01-01T00:00:00-00:60", "energy_kwh": Decimal("0")}])  # found by CI
def test_parse_items_gives_what_pydantic_alone_gave(batch):
    valid, rejected = parse_items(batch)
    expected_valid, expected_rejected = pydantic_only(batch)
    assert values(valid) == values(expected_valid)
    assert rejected == expected_rejected


def test_a_meters_usual_reading_takes_the_plain_check():
    (index, reading), *_ = parse_items([{"timestamp": "2026-11-22T10:15:00Z", "energy_kwh": Decimal("1.5")}])[0]
    assert index == 0 and isinstance(reading, PlainReading)
    assert (reading.utc_timestamp, reading.register_kwh) == (
        datetime(2026, 11, 22, 10, 15, tzinfo=UTC),
        Decimal("1.500"),
    )
