"""The figures alarms watch, defined once for the dashboard too: the recent rate, days of balance, the projection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine

from alarms import figures as alarm_figures
from alarms.evaluation import evaluate_households
from alarms.rules import Kind, describe
from energypay.dashboard import dashboard_cards
from meters.models import HourlyUsage
from payments import figures
from payments.figures import wallet_balance
from payments.models import Utxo
from tests.alarms.conftest import make_home_for

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)


pytestmark = pytest.mark.time_machine(NOW, tick=False)


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


# --- The shared definitions: the recent rate, days of balance left, the month projected -----------


def rate(home, now: datetime = NOW) -> Decimal | None:
    return figures.recent_daily_costs([home.household.pk], now).get(home.household.pk)


def test_the_recent_window_is_the_last_7_days_of_closed_hours():
    assert figures.recent_window(NOW + timedelta(minutes=25)) == (NOW - timedelta(days=7), NOW)
    assert figures.recent_window(NOW) == (NOW - timedelta(days=7), NOW)


def test_the_recent_rate_is_the_average_day_of_the_last_week_of_closed_hours(home):
    for day in range(1, 8):
        home.line(NOW - timedelta(days=day), eur="3")
    home.line(NOW - timedelta(days=7, hours=1), eur="100")  # an hour before the window
    home.line(NOW, eur="50")  # the current hour is not over: not part of the rate
    assert rate(home, NOW + timedelta(minutes=59)) == Decimal("3")


def test_a_new_household_is_averaged_over_the_days_it_has_but_at_least_one(home):
    home.line(NOW - timedelta(hours=1), eur="1")
    assert rate(home) == Decimal("1")  # one hour's EUR 1 is not taken for EUR 24 a day
    home.line(NOW - timedelta(days=2), eur="4")
    home.line(NOW - timedelta(days=1), eur="3")
    assert rate(home) == Decimal("4")  # EUR 8 over the 2 days since its first line


def test_no_line_in_the_window_means_no_rate(home):
    home.line(NOW - timedelta(days=9), eur="3")
    home.line(NOW, eur="3")  # the current hour only
    assert rate(home) is None
    assert figures.daily_rate(None, None, figures.recent_window(NOW)) is None


@pytest.mark.parametrize(
    ("balance", "owed", "daily", "days"),
    [
        ("30", "0", "4", 7),  # 7.5 days: whole days, rounded down
        ("30", "2", "4", 7),  # 7.0
        ("30", "2.01", "4", 6),  # 6.9975: what is owed is paid first
        ("5", "10", "1", 0),  # owes more than it holds: it has run out
        ("30", "0", "0", None),  # nothing spent: it does not run out
        ("30", "0", None, None),  # no recent usage to go by
    ],
)
def test_days_left_are_whole_days_after_paying_what_is_owed(balance, owed, daily, days):
    result = figures.days_left(Decimal(balance), Decimal(owed), None if daily is None else Decimal(daily))
    assert result == (None if days is None else Decimal(days))


def test_what_is_owed_is_every_priced_unpaid_line(home, other_home):
    home.line(NOW - timedelta(days=40), eur="1.25", settled=False)  # long overdue
    home.line(NOW, eur="0.5", settled=False)  # the current hour
    home.line(NOW - timedelta(hours=1), eur="9")  # paid
    unpriced = NOW - timedelta(hours=2)  # no price yet: nothing to pay
    HourlyUsage.objects.create(household=home.household, meter=home.meter, hour_start=unpriced, seq=999, kwh=1)
    other_home.line(NOW, eur="7", settled=False)
    assert figures.owed_costs([home.household.pk]) == {home.household.pk: Decimal("1.75")}


def test_the_month_projection_adds_the_rest_of_the_month_at_the_recent_rate(home):
    """18 Nov 10:00 UTC is 11:00 in Madrid; November ends 30 Nov 23:00 UTC: 12 days and 13 hours left."""
    home.line(datetime(2026, 11, 2, tzinfo=UTC), eur="20")
    for day in range(1, 8):
        home.line(NOW - timedelta(days=day), eur="2")
    so_far = alarm_figures.month_costs([home.household], NOW)[home.household.pk]
    _, month_end = alarm_figures.local_month_bounds(NOW, home.household.timezone)
    left = Decimal(12) + Decimal(13) / 24
    expected = (Decimal(34) + 2 * left).quantize(Decimal("0.01"))
    assert figures.projection(so_far, rate(home), NOW, month_end) == expected == Decimal("59.08")


def test_the_first_hour_of_a_month_projects_what_it_has_spent(home):
    start = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)  # 1 December, 00:00 in Madrid
    home.line(start, eur="1")
    now = start + timedelta(minutes=30)
    _, month_end = alarm_figures.local_month_bounds(now, home.household.timezone)
    so_far = alarm_figures.month_costs([home.household], now)[home.household.pk]
    assert (so_far, rate(home, now)) == (Decimal("1"), None)  # the hour is not over: no rate yet
    assert figures.projection(so_far, None, now, month_end) == Decimal("1.00")


def test_the_dashboard_cards_show_what_the_alarms_compare(home):
    """Same data, same moment: the card's days left and projection are the alarms' values, to the unit.

    At 10:25 the 10:00 hour is open: its EUR 2 is owed and spent this month, but not part of the rate.
    Rate: (7 x EUR 3 + EUR 1.50) / 7 days = EUR 3.2142857 a day. Owed: EUR 1.50 + EUR 2 = EUR 3.50.
    Days left: (18 - 3.50) / 3.2142857 = 4.51: 4 whole days (5 without what is owed).
    """
    now = NOW + timedelta(minutes=25)
    home.line(datetime(2026, 11, 2, 12, tzinfo=UTC), eur="20")  # this month, before the window
    for day in range(1, 8):
        home.line(NOW - timedelta(days=day), eur="3")
    home.line(NOW - timedelta(hours=1), eur="1.5", settled=False)
    home.line(NOW, eur="2", settled=False)
    home.set_balance("18")
    with time_machine.travel(now, tick=False):
        cards = dashboard_cards(home.household, now)
        left = Decimal(12) + Decimal(12 * 60 + 35) / (24 * 60)  # to 30 Nov 23:00 UTC, the end of November in Madrid
        assert cards.projected_eur == (Decimal("44.5") + Decimal("22.5") / 7 * left).quantize(Decimal("0.01"))
        assert cards.days_left == 4
        four, three = home.rule(Kind.BALANCE_DAYS, "4"), home.rule(Kind.BALANCE_DAYS, "3")
        at_card = home.rule(Kind.MONTH_PROJECTED, str(cards.projected_eur))
        a_cent_above = home.rule(Kind.MONTH_PROJECTED, str(cards.projected_eur + Decimal("0.01")))
        assert evaluate_households([home.household.pk], "all") == {"fired": 2, "unchanged": 2}
    for rule in (four, three, at_card, a_cent_above):
        rule.refresh_from_db()
    assert (four.firing, three.firing, at_card.firing, a_cent_above.firing) == (True, False, True, False)
    assert four.last_value == three.last_value == cards.days_left
    assert at_card.last_value == a_cent_above.last_value == cards.projected_eur


@pytest.mark.parametrize(
    ("kind", "threshold", "text"),
    [
        (Kind.HOURLY_COST, "1.5", "Tell me when an hour costs €1.50 or more"),
        (Kind.DAILY_COST, "5", "Tell me when a day costs €5.00 or more"),
        (Kind.HOURLY_ENERGY, "2.5", "Tell me when an hour uses 2.500 kWh or more"),
        (Kind.MONTH_PROJECTED, "80", "Tell me when this month is on course to cost €80.00 or more"),
        (Kind.BALANCE_BELOW, "10", "Tell me when my balance is €10.00 or less"),
        (Kind.BALANCE_DAYS, "1", "Tell me when my balance will last 1 day or less"),
        (Kind.BALANCE_DAYS, "7.000", "Tell me when my balance will last 7 days or less"),
        (Kind.METER_SILENT, "24", "Tell me when a meter has been silent for 24 hours or more"),
        (Kind.SETTLEMENT_FAILED, None, "Tell me when a payment fails or I fall behind on payments"),
    ],
)
def test_every_kind_has_a_sentence_a_person_would_say(kind, threshold, text):
    assert describe(kind, None if threshold is None else Decimal(threshold)) == text
