"""The ground floor's helpers, on their own: no database, no app."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest

from lib.backoff import schedule
from lib.csvstream import csv_lines
from lib.jsonapi import error, reject_constant
from lib.money import format_money, format_percent


def test_the_backoff_doubles_from_the_first_wait_up_to_the_cap():
    waits = [schedule(tries, first=timedelta(minutes=1), cap=timedelta(hours=1)) for tries in range(8)]
    assert waits == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 60, 60)]


def test_the_backoff_stays_at_the_cap_however_many_tries_without_overflowing():
    assert schedule(10**6, first=timedelta(minutes=1), cap=timedelta(hours=6)) == timedelta(hours=6)


def test_alarm_mails_and_broadcasts_share_one_schedule_with_their_own_bounds():
    from alarms.notify import backoff
    from payments.broadcast import MAX_BACKOFF, broadcast_backoff

    assert [backoff(n) for n in (1, 2, 10)] == [timedelta(minutes=1), timedelta(minutes=2), timedelta(hours=6)]
    assert [broadcast_backoff(n) for n in (0, 1, 99)] == [timedelta(minutes=1), timedelta(minutes=2), MAX_BACKOFF]


def test_csv_lines_are_streamed_one_quoted_line_per_row():
    lines = csv_lines(iter([["a", "b,c"], [1, Decimal("0.10")]]))
    assert next(lines) == 'a,"b,c"\r\n'
    assert list(lines) == ["1,0.10\r\n"]


def test_an_api_error_is_json_with_its_status_and_headers():
    response = error(429, "too many readings", Retry_After="30")
    assert response.status_code == 429
    assert json.loads(response.content) == {"error": {"code": "rate_limited", "message": "too many readings"}}
    assert response["Retry-After"] == "30"


def test_an_api_error_names_its_code_or_gets_the_status_default():
    assert json.loads(error(400, "no", code="invalid_json").content)["error"]["code"] == "invalid_json"
    assert json.loads(error(404, "gone").content)["error"]["code"] == "not_found"
    assert json.loads(error(418, "tea").content)["error"]["code"] == "http_418"


@pytest.mark.parametrize("text", ["NaN", "Infinity", '{"x": -Infinity}'])
def test_strict_json_refuses_nan_and_infinity(text):
    with pytest.raises(ValueError, match="not valid JSON"):
        json.loads(text, parse_constant=reject_constant)


def test_money_formatting_is_plain_python_and_matches_the_filter():
    from meters.templatetags.money import money

    for amount in (Decimal("1234567.5"), Decimal("-2.145"), Decimal("0.000004"), None):
        assert format_money(amount, "EUR") == money(amount, "EUR")
    assert format_money(Decimal("-1234.5"), "EUR") == "-€1,234.50"
    assert format_money(Decimal("-1234.5"), "EUR", locale="es") == "-1.234,50\N{NO-BREAK SPACE}€"


def test_a_tax_rate_reads_as_a_percentage_with_all_its_digits_in_the_readers_way():
    # The electricity tax's rate has eight decimals of a percent; a statement shows every one of them.
    assert format_percent(Decimal("0.0511269632")) == "5.11269632%"
    assert format_percent(Decimal("0.0511269632"), locale="es") == "5,11269632\N{NO-BREAK SPACE}%"
    assert format_percent(Decimal("0.21"), locale="es") == "21\N{NO-BREAK SPACE}%"
    assert format_percent(Decimal("0.100000000000")) == "10%"
    assert format_percent(None) == "\N{EN DASH}"


def test_taxes_are_rounded_half_up_to_the_micro_euro_and_statement_lines_to_the_cent():
    from lib.money import round_cent, tax_of

    assert tax_of(Decimal("0.000010"), Decimal("0.05")) == Decimal("0.000001")  # 0.0000005, half up
    # A 20-decimal factor on a large cost: 35 digits, multiplied exactly before the one rounding.
    assert tax_of(Decimal("999999999.999999"), Decimal("0.27186362547200000001")) == Decimal("271863625.472000")
    assert tax_of(Decimal("1.500000"), Decimal("0.271863625472")) == Decimal("0.407795")
    assert round_cent(Decimal("0.005")) == Decimal("0.01") and round_cent(Decimal("174.892811")) == Decimal("174.89")
