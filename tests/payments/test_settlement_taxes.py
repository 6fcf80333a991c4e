"""Settlement pays each hour's cost and its taxes: what reaches the utility on-chain is the statement's money."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from energypay.dashboard import dashboard_cards
from meters.models import HourlyUsage
from payments.broadcast import send_one
from payments.figures import line_amount, owed_costs
from payments.models import PriceQuote, Settlement, SettlementLine
from payments.settlement import settle_household
from payments.wallets import open_wallet
from tests.meters.taxkit import hourly_readings, spanish_taxes
from tests.payments.test_settlement import utility_received

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 22, 12, tzinfo=UTC)

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def taxed_home(make_meter, ledger):
    """1 kWh at 0.25 EUR in each of the hours 10:00 and 11:00 (and 12:00, not closed yet), under IEE and VAT 21%."""
    spanish_taxes()
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(minutes=1))
    meter, _ = make_meter()
    wallet = open_wallet(meter.household)
    ledger.fund(wallet.address, 10_000_000)
    ledger.mine()
    wallet.sync_coins(ledger)
    hourly_readings(meter, datetime(2026, 11, 22, 10, tzinfo=UTC), 3)
    return meter.household


def test_a_settlement_pays_the_hours_cost_and_their_taxes(taxed_home, ledger):
    # Each hour: 0.25 + 0.25 x 0.271863625472 = 0.25 + 0.067965906368 -> 0.067966 of taxes.
    result = settle_household(taxed_home.pk, PERIOD_END, timezone.now())
    send_one(Settlement, result.settlement_id, ledger)

    settlement = Settlement.objects.get(pk=result.settlement_id)
    assert settlement.eur == Decimal("0.635932")  # 2 x (0.25 + 0.067966)
    assert settlement.satoshis == 2_119_773  # 0.635932 EUR at 30 EUR/BSV, half up
    assert utility_received(ledger) == 2_119_773
    assert sorted(SettlementLine.objects.values_list("eur", flat=True)) == [Decimal("0.317966")] * 2


def test_the_money_words_count_taxes_and_reconcile_with_what_was_paid(taxed_home, ledger):
    settle_household(taxed_home.pk, PERIOD_END, timezone.now())

    lines = HourlyUsage.objects.filter(household=taxed_home)
    everything = lines.aggregate(total=Sum(line_amount()))["total"]
    settled = Settlement.objects.aggregate(total=Sum("eur"))["total"]
    owed = owed_costs([taxed_home.pk])[taxed_home.pk]
    assert owed == Decimal("0.317966")  # the hour of 12:00, not closed at the run
    assert settled + owed == everything == Decimal("0.953898")
    assert dashboard_cards(taxed_home, NOW).owed_eur == owed
