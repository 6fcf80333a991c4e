"""Money rounding in one place. Framework-free: amounts are Decimal, currency EUR."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

EUR_PLACES = Decimal("0.000001")  # the micro-euro: every stored EUR amount and sum; settlement rounds further
KWH_PLACES = Decimal("0.000001")  # usage lines' kWh


def round_eur(amount: Decimal) -> Decimal:
    return amount.quantize(EUR_PLACES, rounding=ROUND_HALF_UP)


def cost_of(kwh: Decimal, rate: Decimal) -> Decimal:
    return round_eur(kwh * rate)
