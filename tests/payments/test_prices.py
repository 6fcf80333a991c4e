"""Prices: where a quote comes from, which quote a settlement may use, and EUR <-> satoshis.

Decisions these tests pin down:
- A quote exactly PRICE_MAX_AGE old is still usable; one second older is not.
- The newest quote in the window [now - PRICE_MAX_AGE, now + 1 minute] is used. An older quote is
  never fresher than a newer one, so a stale newest quote means None. A quote stamped more than a
  minute ahead comes from a wrong clock: ignored, and it does not hide a fresh older one.
- A price outside 0.01..1,000,000 EUR/BSV is a feed glitch and is refused, like a failed fetch.
- Prices keep 8 decimal places, rounded half up, parsed from the JSON text without a float.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from fractions import Fraction

import pytest
import requests
import responses
import time_machine
from hypothesis import given
from hypothesis import strategies as st
from responses import matchers

from lib.money import SATS_PER_BSV, eur_to_satoshis, satoshis_to_eur
from payments.figures import newest_quote, usable_quote
from payments.models import PriceQuote
from payments.prices import COINGECKO_URL, PriceUnavailable, fetch_quote

NOW = datetime(2026, 11, 22, 10, 5, tzinfo=UTC)
MAX_AGE = timedelta(minutes=15)
API_KEY = "CG-secret-demo-key-123"


@pytest.fixture(autouse=True)
def _price_settings(settings):
    settings.PRICE_SOURCE = "fixed"
    settings.BSV_EUR_PRICE = Decimal("30.00")
    settings.COINGECKO_API_KEY = ""
    settings.PRICE_MAX_AGE = MAX_AGE


@pytest.fixture
def coingecko(settings):
    """CoinGecko as the price source, with no network: each test says what it answers."""
    settings.PRICE_SOURCE = "coingecko"
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def answer(mock: responses.RequestsMock, body: str, status: int = 200, **kwargs) -> None:
    # The body is JSON text, as CoinGecko sends it: building it from Python floats would hide the
    # very rounding the parser must avoid.
    mock.get(COINGECKO_URL, body=body, status=status, content_type="application/json", **kwargs)


def quote_at(fetched_at: datetime, price: str = "30") -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal(price), fetched_at=fetched_at)


# --- fetch_quote: the fixed source ---


def test_fixed_source_stores_the_configured_price(db, settings):
    settings.BSV_EUR_PRICE = Decimal("42.5")
    with responses.RequestsMock() as no_network:
        quote = fetch_quote(NOW)
        assert len(no_network.calls) == 0

    quote.refresh_from_db()
    assert (quote.source, quote.bsv_eur, quote.fetched_at) == ("fixed", Decimal("42.5"), NOW)
    assert PriceQuote.objects.count() == 1


def test_quote_is_stamped_with_the_given_now_not_the_wall_clock(db):
    with time_machine.travel(NOW + timedelta(days=3), tick=False):
        quote = fetch_quote(NOW)

    quote.refresh_from_db()
    assert quote.fetched_at == NOW


def test_fixed_price_outside_the_sane_range_is_refused(db, settings):
    settings.BSV_EUR_PRICE = Decimal("0.0001")

    with pytest.raises(PriceUnavailable, match="BSV_EUR_PRICE"):
        fetch_quote(NOW)
    assert not PriceQuote.objects.exists()


def test_naive_now_is_a_programming_error(db):
    with pytest.raises(ValueError, match="timezone-aware"):
        fetch_quote(datetime(2026, 11, 22, 10, 5))


# --- fetch_quote: CoinGecko ---


def test_coingecko_price_is_stored_as_the_exact_decimal(db, coingecko):
    answer(
        coingecko,
        '{"bitcoin-cash-sv": {"eur": 31.2}}',
        match=[matchers.query_param_matcher({"ids": "bitcoin-cash-sv", "vs_currencies": "eur"})],
    )

    quote = fetch_quote(NOW)

    quote.refresh_from_db()
    assert (quote.source, quote.bsv_eur, quote.fetched_at) == ("coingecko", Decimal("31.2"), NOW)
    assert coingecko.calls[0].request.req_kwargs["timeout"] == 10


def test_coingecko_price_is_parsed_from_the_text_not_through_a_float(db, coingecko):
    # As a float, 31.123456785 is 31.12345678499..., which would round down to ...678.
    answer(coingecko, '{"bitcoin-cash-sv": {"eur": 31.123456785}}')

    quote = fetch_quote(NOW)

    assert quote.bsv_eur == Decimal("31.12345679")
    quote.refresh_from_db()
    assert quote.bsv_eur == Decimal("31.12345679")


def test_integer_price_is_accepted(db, coingecko):
    answer(coingecko, '{"bitcoin-cash-sv": {"eur": 31}}')

    assert fetch_quote(NOW).bsv_eur == Decimal("31")


def test_api_key_is_sent_in_the_demo_header_when_set(db, coingecko, settings):
    settings.COINGECKO_API_KEY = API_KEY
    answer(
        coingecko,
        '{"bitcoin-cash-sv": {"eur": 31.2}}',
        match=[matchers.header_matcher({"x-cg-demo-api-key": API_KEY})],
    )

    fetch_quote(NOW)

    assert len(coingecko.calls) == 1


def test_no_api_key_header_without_a_key(db, coingecko):
    answer(coingecko, '{"bitcoin-cash-sv": {"eur": 31.2}}')

    fetch_quote(NOW)

    assert "x-cg-demo-api-key" not in coingecko.calls[0].request.headers


def test_api_key_appears_in_no_error_and_no_log(db, coingecko, settings, caplog):
    settings.COINGECKO_API_KEY = API_KEY
    answer(coingecko, '{"status": {"error_code": 10002, "error_message": "API key invalid"}}', status=401)

    with caplog.at_level(logging.DEBUG), pytest.raises(PriceUnavailable) as failure:
        fetch_quote(NOW)

    assert "HTTP 401" in str(failure.value)
    assert API_KEY not in str(failure.value)
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(requests.Timeout("read timed out"), 200, id="timeout"),
        pytest.param(requests.ConnectionError("connection refused"), 200, id="connection-error"),
        pytest.param("{}", 500, id="http-500"),
        pytest.param("<html>Bad gateway</html>", 502, id="http-502"),
        pytest.param("{}", 503, id="http-503"),
        pytest.param("{}", 404, id="http-404"),
        pytest.param("not json", 200, id="malformed-json"),
        pytest.param("<html>maintenance</html>", 200, id="html-page"),
        pytest.param("", 200, id="empty-body"),
        pytest.param('{"bitcoin-cash-sv": {"eur": 31.2', 200, id="truncated-json"),
        pytest.param("[31.2]", 200, id="not-an-object"),
        pytest.param("{}", 200, id="coin-missing"),
        pytest.param('{"bitcoin-cash-sv": {}}', 200, id="eur-missing"),
        pytest.param('{"bitcoin-cash-sv": {"usd": 40.1}}', 200, id="only-another-currency"),
        pytest.param('{"bitcoin-cash-sv": 31.2}', 200, id="coin-not-an-object"),
        pytest.param('{"bitcoin-cash-sv": {"eur": null}}', 200, id="null-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": "31.2"}}', 200, id="string-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": true}}', 200, id="boolean-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": 0}}', 200, id="zero-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": -31.2}}', 200, id="negative-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": NaN}}', 200, id="nan-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": Infinity}}', 200, id="infinite-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": 0.000001}}', 200, id="absurdly-low-price"),
        pytest.param('{"bitcoin-cash-sv": {"eur": 1e12}}', 200, id="absurdly-high-price"),
    ],
)
def test_any_coingecko_failure_raises_and_stores_nothing(db, coingecko, body, status):
    answer(coingecko, body, status=status)

    with pytest.raises(PriceUnavailable):
        fetch_quote(NOW)

    assert not PriceQuote.objects.exists()


def test_rate_limit_says_how_long_to_wait(db, coingecko):
    answer(coingecko, '{"status": {"error_code": 429}}', status=429, headers={"Retry-After": "60"})

    with pytest.raises(PriceUnavailable, match="429") as failure:
        fetch_quote(NOW)

    assert failure.value.retry_after == 60
    assert not PriceQuote.objects.exists()


def test_rate_limit_retry_after_may_be_an_http_date(db, coingecko):
    answer(
        coingecko, "{}", status=429, headers={"Retry-After": format_datetime(NOW + timedelta(minutes=2), usegmt=True)}
    )

    with pytest.raises(PriceUnavailable) as failure:
        fetch_quote(NOW)

    assert failure.value.retry_after == 120


def test_rate_limit_without_retry_after(db, coingecko):
    answer(coingecko, "{}", status=429)

    with pytest.raises(PriceUnavailable) as failure:
        fetch_quote(NOW)

    assert failure.value.retry_after is None


# --- usable_quote and newest_quote (payments/figures.py) ---


def test_no_quote_at_all_is_not_usable(db):
    assert usable_quote(NOW) is None
    assert newest_quote(NOW) is None


def test_the_newest_fresh_quote_is_used(db):
    quote_at(NOW - timedelta(minutes=10), "30")
    newest = quote_at(NOW - timedelta(minutes=2), "31")
    quote_at(NOW - timedelta(minutes=5), "32")

    assert usable_quote(NOW) == newest


def test_a_quote_exactly_price_max_age_old_is_still_usable(db):
    quote = quote_at(NOW - MAX_AGE)

    assert usable_quote(NOW) == quote


def test_a_quote_one_second_older_than_price_max_age_is_not(db):
    quote_at(NOW - MAX_AGE - timedelta(seconds=1))

    assert usable_quote(NOW) is None


def test_when_the_newest_quote_is_stale_there_is_none_to_use(db):
    quote_at(NOW - timedelta(hours=2))
    quote_at(NOW - timedelta(minutes=16))

    assert usable_quote(NOW) is None


def test_a_quote_slightly_ahead_within_clock_skew_is_usable(db):
    ahead = quote_at(NOW + timedelta(seconds=60))

    assert usable_quote(NOW) == newest_quote(NOW) == ahead


def test_a_quote_from_a_wrong_clock_is_ignored_and_hides_no_fresh_quote(db):
    fresh = quote_at(NOW - timedelta(minutes=3))
    quote_at(NOW + timedelta(minutes=1, seconds=1))

    assert usable_quote(NOW) == newest_quote(NOW) == fresh


def test_usable_quote_takes_one_query(db, django_assert_num_queries):
    for minutes in range(5):
        quote_at(NOW - timedelta(minutes=minutes))

    with django_assert_num_queries(1):
        usable_quote(NOW)


def test_freshness_is_judged_at_the_given_now_not_the_wall_clock(db):
    quote = quote_at(NOW)

    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert usable_quote(NOW) == quote
    with time_machine.travel(NOW, tick=False):
        assert usable_quote(NOW + timedelta(days=1)) is None


def test_the_newest_quote_is_the_newest_even_when_stale(db):
    quote_at(NOW - timedelta(hours=3))
    newest = quote_at(NOW - timedelta(hours=1))

    assert newest_quote(NOW) == newest
    assert usable_quote(NOW) is None


def test_a_fetched_quote_is_usable_at_once(db):
    quote = fetch_quote(NOW)

    assert usable_quote(NOW) == quote


# --- money: EUR <-> satoshis ---


@pytest.mark.parametrize(
    ("eur", "bsv_eur", "sats"),
    [
        ("0.000015", "30", 50),  # exact: 15 micro-euros at 30 EUR/BSV
        ("0", "30", 0),
        ("0.00000015", "30", 1),  # exactly 0.5 sat: rounds up
        ("0.00000045", "30", 2),  # exactly 1.5 sat: rounds up
        ("0.000000149999", "30", 0),  # 0.49999... sat: rounds down
        ("0.000000150001", "30", 1),
        ("1", "3", 33_333_333),  # 33,333,333.33... sat: no end, rounds down
        ("2", "3", 66_666_667),  # 66,666,666.66... sat: rounds up
        ("30", "30", SATS_PER_BSV),
        ("2.14", "31.23456789", 6_851_383),  # 6,851,383.40... sat
    ],
)
def test_eur_to_satoshis_rounds_half_up_to_whole_satoshis(eur, bsv_eur, sats):
    assert eur_to_satoshis(Decimal(eur), Decimal(bsv_eur)) == sats


def test_eur_to_satoshis_is_exact_for_large_amounts():
    # All the BSV there will ever be, and an amount no float can carry to the satoshi.
    assert eur_to_satoshis(Decimal("655925925.69"), Decimal("31.23456789")) == 21_000_000 * SATS_PER_BSV
    # 176,366,841,446,208,111,428.57... sat; through floats it would be ...208,077,824.
    huge = Decimal("123456789012.345678")
    assert eur_to_satoshis(huge, Decimal("0.07")) == 176_366_841_446_208_111_429


@pytest.mark.parametrize(
    ("eur", "bsv_eur"),
    [
        ("-0.000001", "30"),
        ("NaN", "30"),
        ("Infinity", "30"),
        ("1", "0"),
        ("1", "-30"),
        ("1", "NaN"),
        ("1", "-Infinity"),
    ],
)
def test_eur_to_satoshis_refuses_negative_and_non_finite_input(eur, bsv_eur):
    with pytest.raises(ValueError):
        eur_to_satoshis(Decimal(eur), Decimal(bsv_eur))


def test_eur_to_satoshis_refuses_amounts_beyond_its_precision():
    with pytest.raises(ValueError, match="out of range"):
        eur_to_satoshis(Decimal("1E+90"), Decimal("1E-20"))


def test_whole_numbers_are_exact_and_accepted():
    assert eur_to_satoshis(0, Decimal("30")) == 0
    assert eur_to_satoshis(3, 30) == SATS_PER_BSV // 10
    assert satoshis_to_eur(SATS_PER_BSV, 30) == Decimal("30")


def test_floats_are_refused_never_converted():
    with pytest.raises(TypeError):
        eur_to_satoshis(0.1, Decimal("30"))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        eur_to_satoshis(Decimal("0.1"), 30.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        satoshis_to_eur(50, 30.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        eur_to_satoshis(True, Decimal("30"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sats", "bsv_eur", "eur"),
    [
        (50, "30", "0.000015"),
        (0, "30", "0"),
        (1, "50", "0.000001"),  # 0.0000005 EUR: half a micro-euro rounds up
        (1, "49.99999999", "0"),  # just under half
        (21_000_000 * SATS_PER_BSV, "31.23456789", "655925925.69"),
    ],
)
def test_satoshis_to_eur_rounds_half_up_to_micro_euros(sats, bsv_eur, eur):
    assert satoshis_to_eur(sats, Decimal(bsv_eur)) == Decimal(eur)


def test_satoshis_to_eur_refuses_negative_satoshis_and_bad_prices():
    with pytest.raises(ValueError):
        satoshis_to_eur(-1, Decimal("30"))
    with pytest.raises(ValueError):
        satoshis_to_eur(1, Decimal("0"))


euros = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False, allow_infinity=False)
prices = st.decimals(min_value=Decimal("0.01"), max_value=10**6, places=8, allow_nan=False, allow_infinity=False)


@given(eur=euros, bsv_eur=prices)
def test_eur_to_satoshis_is_the_exact_value_rounded_half_up(eur, bsv_eur):
    exact = Fraction(eur) * SATS_PER_BSV / Fraction(bsv_eur)

    sats = eur_to_satoshis(eur, bsv_eur)

    assert abs(sats - exact) <= Fraction(1, 2)
    assert sats == (exact + Fraction(1, 2)).__floor__()  # a tie goes up


@given(a=euros, b=euros, bsv_eur=prices)
def test_eur_to_satoshis_never_falls_when_the_amount_rises(a, b, bsv_eur):
    low, high = sorted((a, b))

    assert eur_to_satoshis(low, bsv_eur) <= eur_to_satoshis(high, bsv_eur)


@given(eur=euros, bsv_eur=prices)
def test_round_trip_loses_at_most_half_a_satoshi_and_half_a_micro_euro(eur, bsv_eur):
    back = satoshis_to_eur(eur_to_satoshis(eur, bsv_eur), bsv_eur)

    half_a_satoshi_in_eur = bsv_eur / 2 / SATS_PER_BSV
    assert abs(back - eur) <= half_a_satoshi_in_eur + Decimal("0.0000005")
