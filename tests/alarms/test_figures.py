"""The figures alarms watch, which the dashboard may show too: the recent rate, days of balance, the projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from alarms import figures
from alarms.rules import Kind, describe
from payments.models import Utxo
from payments.wallets import wallet_balance
from tests.alarms.conftest import make_home_for

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def test_set_based_balances_equal_wallet_balance(make_household, quote):
    homes = [make_home_for(make_household()) for _ in range(3)]
    homes[0].set_balance("12.34")
    homes[1].set_balance("0.01")
    Utxo.objects.filter(wallet=homes[1].wallet, state=Utxo.State.AVAILABLE).update(state=Utxo.State.RESERVED)
    nobody = make_household()  # no wallet at all
    balances = figures.balances_eur([h.household.pk for h in homes] + [nobody.pk], NOW)
    for home in homes:
        assert balances[home.household.pk] == wallet_balance(home.wallet, NOW).eur
    assert balances[nobody.pk] == wallet_balance(None, NOW).eur == Decimal("0")
    assert balances[homes[0].household.pk] == Decimal("12.34")


def test_no_quote_means_no_balance_in_eur(household):
    assert figures.balances_eur([household.pk], NOW) is None
    assert figures.days_of_balance_left(household, NOW) is None


def test_the_recent_rate_is_the_average_day_of_the_last_week(home):
    for day in range(1, 8):
        home.line(NOW - timedelta(days=day), eur="3")
    home.line(NOW - timedelta(days=8), eur="100")  # before the window
    assert figures.recent_daily_cost(home.household, NOW) == Decimal("3")


def test_a_new_household_is_averaged_over_the_days_it_has(home):
    home.line(NOW - timedelta(days=2), eur="4")
    home.line(NOW - timedelta(days=1), eur="4")
    assert figures.recent_daily_cost(home.household, NOW) == Decimal("4")
    home.line(NOW - timedelta(hours=1), eur="5")
    assert figures.recent_daily_cost(home.household, NOW) == Decimal("6.5")


def test_days_of_balance_left(home):
    home.set_balance("30")
    assert figures.days_of_balance_left(home.household, NOW) is None  # nothing spent: it does not run out
    for day in range(1, 8):
        home.line(NOW - timedelta(days=day), eur="4")
    assert figures.days_of_balance_left(home.household, NOW) == Decimal("7.5")


def test_the_month_projection_adds_the_rest_of_the_month_at_the_recent_rate(home):
    """18 Nov 10:00 UTC is 11:00 in Madrid; November ends 30 Nov 23:00 UTC: 12 days and 13 hours left."""
    home.line(datetime(2026, 11, 2, tzinfo=UTC), eur="20")
    for day in range(1, 8):
        home.line(NOW - timedelta(days=day), eur="2")
    left = Decimal(12) + Decimal(13) / 24
    assert figures.month_projection(home.household, NOW) == (Decimal(34) + 2 * left).quantize(Decimal("0.000001"))


def test_the_first_hour_of_a_month_does_not_project_a_fortune(home):
    start = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 1 December, 00:00 in Madrid
    home.line(start, eur="1")
    assert figures.month_projection(home.household, start + timedelta(minutes=30)) < Decimal("32")


@pytest.mark.parametrize(
    ("kind", "threshold", "text"),
    [
        (Kind.HOURLY_COST, "1.5", "Tell me when an hour costs EUR 1.50 or more"),
        (Kind.DAILY_COST, "5", "Tell me when a day costs EUR 5.00 or more"),
        (Kind.HOURLY_ENERGY, "2.5", "Tell me when an hour uses 2.500 kWh or more"),
        (Kind.MONTH_PROJECTED, "80", "Tell me when this month is on course to cost EUR 80.00 or more"),
        (Kind.BALANCE_BELOW, "10", "Tell me when my balance is EUR 10.00 or less"),
        (Kind.BALANCE_DAYS, "1", "Tell me when my balance will last 1 day or less"),
        (Kind.BALANCE_DAYS, "7.000", "Tell me when my balance will last 7 days or less"),
        (Kind.METER_SILENT, "24", "Tell me when a meter has been silent for 24 hours or more"),
        (Kind.SETTLEMENT_FAILED, None, "Tell me when a payment fails or I fall behind on payments"),
    ],
)
def test_every_kind_has_a_sentence_a_person_would_say(kind, threshold, text):
    assert describe(kind, None if threshold is None else Decimal(threshold)) == text
