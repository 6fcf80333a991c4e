"""A table of money rounded to the cent still adds up: rows, columns and the total (lib/apportion.py)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lib import apportion
from lib.apportion import to_cents

CENT = Decimal("0.01")
micro_euros = st.integers(min_value=-20_000, max_value=500_000).map(lambda n: Decimal(n).scaleb(-6))
tables = st.integers(min_value=0, max_value=31).flatmap(
    lambda rows: st.lists(st.lists(micro_euros, min_size=3, max_size=3), min_size=rows, max_size=rows)
)


def check(table: list[list[Decimal]], rounded) -> None:
    exact_total = sum((value for row in table for value in row), Decimal(0))
    assert rounded.total == exact_total.quantize(CENT, ROUND_HALF_UP)  # what the cards show
    assert sum(rounded.rows, Decimal(0)) == rounded.total
    assert sum(rounded.columns, Decimal(0)) == rounded.total
    for row, cells, shown in zip(table, rounded.cells, rounded.rows, strict=True):
        assert sum(cells, Decimal(0)) == shown
        assert abs(sum(row, Decimal(0)) - shown) < CENT
        assert all(abs(value - cell) < CENT for value, cell in zip(row, cells, strict=True))
    for j, shown in enumerate(rounded.columns):
        assert abs(sum((row[j] for row in table), Decimal(0)) - shown) < CENT


@settings(max_examples=300, deadline=None)
@given(tables)
def test_every_row_column_and_the_total_add_up_each_figure_within_a_cent(table):
    check(table, to_cents(table))


@settings(max_examples=150, deadline=None)
@given(tables)
def test_the_flow_alone_finds_a_rounding_too(table):
    original = apportion._by_swaps
    apportion._by_swaps = lambda *args: None
    try:
        check(table, to_cents(table))
    finally:
        apportion._by_swaps = original


def test_a_day_of_a_third_of_a_cent_each_hour():
    # Rounded alone, 24 hours of 0.333... cents would show 0.00 each and a total of 0.08.
    table = [[Decimal("0.003333"), Decimal("0.0125"), Decimal("0.003325")] for _ in range(24)]
    rounded = to_cents(table)
    check(table, rounded)
    assert rounded.total == Decimal("0.46")
    assert rounded.columns == [Decimal("0.08"), Decimal("0.30"), Decimal("0.08")]


@pytest.mark.parametrize("table", [[], [[Decimal("1.234567")]], [[Decimal("0"), Decimal("0")]]])
def test_small_tables(table):
    check(table, to_cents(table))
