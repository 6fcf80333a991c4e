"""BSV/EUR quotes: fetching and storing them.

A beat job calls ``fetch_quote`` every few minutes, stamped with the ``now`` it is given. Which
quote a settlement may use, and which one a page shows, is payments/figures.py's ``usable_quote``
and ``newest_quote``: settlement defers when there is none (docs/architecture.md: never guess a
price).
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone

from lib.jsonapi import reject_constant
from payments.models import PriceQuote

logger = logging.getLogger(__name__)

COINGECKO_URL = "https://api.coingecko.com/api/v3/simple/price"
COINGECKO_COIN = "bitcoin-cash-sv"
COINGECKO_TIMEOUT = 10  # seconds, for connecting and for each read

# A price outside this range is a feed glitch, not a market: at 0.0001 EUR/BSV a 1 EUR hour would
# cost a household 10,000 BSV. The upper bound also keeps the value inside PriceQuote.bsv_eur.
MIN_BSV_EUR = Decimal("0.01")
MAX_BSV_EUR = Decimal("1000000")
PRICE_PLACES = Decimal("0.00000001")  # PriceQuote.bsv_eur has 8 decimal places


class PriceUnavailable(Exception):
    """No trustworthy price could be fetched; nothing was stored.

    ``retry_after`` is the number of seconds the source asked us to wait (HTTP 429), if it said.
    """

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def fetch_quote(now: datetime) -> PriceQuote:
    """Fetch the price from ``settings.PRICE_SOURCE``, store it stamped ``now`` and return it.

    Raises PriceUnavailable (and stores nothing) when the source fails or answers nonsense.
    """
    if timezone.is_naive(now):
        raise ValueError("now must be timezone-aware.")
    source = settings.PRICE_SOURCE
    if source == "fixed":
        price = _checked_price(Decimal(settings.BSV_EUR_PRICE), "BSV_EUR_PRICE")
    elif source == "coingecko":
        price = _checked_price(_coingecko_price(now), "CoinGecko")
    else:
        raise ImproperlyConfigured(f"PRICE_SOURCE={source!r} is not one of 'fixed', 'coingecko'.")
    quote = PriceQuote.objects.create(source=source, bsv_eur=price, fetched_at=now)
    logger.info("Stored price quote: %s", quote)
    return quote


def _checked_price(price: Decimal, origin: str) -> Decimal:
    if not price.is_finite() or not MIN_BSV_EUR <= price <= MAX_BSV_EUR:
        raise PriceUnavailable(
            f"{origin} gave {price} EUR/BSV, outside the sane range {MIN_BSV_EUR}..{MAX_BSV_EUR}; not stored."
        )
    # Stored with 8 places: round here so the returned quote holds exactly what the database holds.
    return price.quantize(PRICE_PLACES, rounding=ROUND_HALF_UP)


def _coingecko_price(now: datetime) -> Decimal:
    headers = {"Accept": "application/json"}
    if settings.COINGECKO_API_KEY:
        headers["x-cg-demo-api-key"] = settings.COINGECKO_API_KEY  # a secret: never in a message or log
    try:
        response = requests.get(
            COINGECKO_URL,
            params={"ids": COINGECKO_COIN, "vs_currencies": "eur"},
            headers=headers,
            timeout=COINGECKO_TIMEOUT,
        )
    except requests.RequestException as exc:
        # The class name only: requests' messages are long and say nothing more that helps.
        raise PriceUnavailable(f"CoinGecko unreachable ({type(exc).__name__}).") from exc

    if response.status_code == 429:
        retry_after = _retry_after_seconds(response.headers.get("Retry-After"), now)
        wait = f"; it asks to retry after {retry_after} s" if retry_after is not None else ""
        raise PriceUnavailable(f"CoinGecko rate limit reached (HTTP 429){wait}.", retry_after=retry_after)
    if response.status_code != 200:
        raise PriceUnavailable(f"CoinGecko answered HTTP {response.status_code}.")

    try:
        # Prices are parsed from the JSON text straight into Decimal: a float would round them.
        data = response.json(parse_float=Decimal, parse_int=Decimal, parse_constant=reject_constant)
    except ValueError as exc:  # requests' JSONDecodeError, and NaN / Infinity
        raise PriceUnavailable("CoinGecko answered with malformed JSON.") from exc
    price = _dig(data, COINGECKO_COIN, "eur")
    if not isinstance(price, Decimal):
        raise PriceUnavailable(f"CoinGecko gave no EUR price for {COINGECKO_COIN} (got {str(data)[:200]!r}).")
    return price


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _retry_after_seconds(value: str | None, now: datetime) -> int | None:
    """Retry-After is either a number of seconds or an HTTP date (RFC 9110, 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0, int((when - now).total_seconds()))
