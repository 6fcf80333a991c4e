"""What to deposit: N days of the household's recent cost, in EUR and in satoshis at the newest quote.

The figures are the money words of payments/figures.py (the dashboard's): the recent rate is the
average cost a day (energy, standing charge and taxes) over the last week of closed hours; days left
is what the balance lasts at that rate after what is owed. A household with no line in that week has
no rate: it is offered ``PLAIN_EUR`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from lib.money import CENT, eur_to_satoshis
from meters.models import Household
from payments import figures
from payments.bip21 import payment_uri
from payments.models import PriceQuote, Wallet

DAY_CHOICES = (7, 30)
DEFAULT_DAYS = 30  # a month between top-ups: what a household paying a monthly bill is used to
PLAIN_EUR = Decimal("20.00")  # offered to a household with no recent cost to average


@dataclass(frozen=True)
class TopUp:
    days: int
    per_day_eur: Decimal | None  # the recent rate to the cent; None without a line in the last week
    eur: Decimal  # what to deposit, to the cent: days x per day, or PLAIN_EUR without a rate
    satoshis: int | None  # eur at the newest quote; None without any quote (never guess a price)
    quote: PriceQuote | None
    balance: figures.Balance
    owed_eur: Decimal
    days_left: int | None  # at the recent rate, after what is owed; None without a rate or a price
    uri: str  # bitcoin:<address>[?amount=...]

    @property
    def plain(self) -> bool:
        """No recent cost to average: the amount is the plain PLAIN_EUR."""
        return self.per_day_eur is None


def top_up(household: Household, wallet: Wallet, days: int, now: datetime) -> TopUp:
    """The top-up figures at ``now`` for ``days`` (one of DAY_CHOICES). Four queries."""
    if days not in DAY_CHOICES:
        raise ValueError(f"days must be one of {DAY_CHOICES}, not {days!r}")
    per_day = figures.recent_daily_costs([household.pk], now).get(household.pk)
    balance = figures.wallet_balance(wallet, now)
    owed_eur = figures.owed_costs([household.pk]).get(household.pk, figures.ZERO)
    amount = (per_day * days).quantize(CENT, rounding=ROUND_HALF_UP) if per_day is not None else figures.ZERO
    if amount <= 0:  # no line in the week, or less than a cent of use in it: nothing to average
        per_day, amount = None, PLAIN_EUR
    left = figures.days_left(balance.eur, owed_eur, per_day) if balance.eur is not None else None
    satoshis = eur_to_satoshis(amount, balance.quote.bsv_eur) if balance.quote is not None else None
    return TopUp(
        days=days,
        per_day_eur=per_day.quantize(CENT, rounding=ROUND_HALF_UP) if per_day is not None else None,
        eur=amount,
        satoshis=satoshis,
        quote=balance.quote,
        balance=balance,
        owed_eur=owed_eur,
        days_left=None if left is None else int(left),
        uri=payment_uri(wallet.address, satoshis),
    )
