"""POST /api/v1/readings, rule by rule (docs/architecture.md, "Meter ingest")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import DatabaseError, connection
from django.test import override_settings

from meters.models import HourlyUsage, Meter, MeterEvent, Reading

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "/api/v1/readings"


pytestmark = [pytest.mark.time_machine(NOW, tick=False), pytest.mark.usefixtures("ingest_path")]


@pytest.fixture
def post(client, meter_and_token):
    _, token = meter_and_token

    def send(body, *, token: str | None = token, raw: bool = False, **headers):
        data = body if raw else json.dumps(body)
        if token is not None:
            headers.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
        # The test client leaves the content type out of a request without a body: a meter would not.
        headers.setdefault("CONTENT_TYPE", "application/json")
        return client.post(URL, data, content_type="application/json", **headers)

    return send


def reading(minutes_ago: int, kwh) -> dict:
    return {"timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z"), "energy_kwh": kwh}


def stored(meter: Meter) -> list[tuple[datetime, Decimal]]:
    return list(meter.readings.order_by("timestamp").values_list("timestamp", "energy_kwh"))


# --- accepted input ---------------------------------------------------------------------------


def test_batch_of_readings_is_stored_and_counted(post, meter_and_token):
    meter, _ = meter_and_token
    response = post({"readings": [reading(60, 100), reading(45, "100.250"), reading(30, 100.5)]})
    assert response.status_code == 200
    assert response.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    assert [kwh for _, kwh in stored(meter)] == [Decimal("100"), Decimal("100.25"), Decimal("100.5")]


def test_single_reading_object_is_accepted(post, meter_and_token):
    meter, _ = meter_and_token
    response = post(reading(10, 12345.678))
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert stored(meter) == [(NOW - timedelta(minutes=10), Decimal("12345.678"))]


def test_register_given_as_float_keeps_its_exact_decimal_value(post, meter_and_token):
    meter, _ = meter_and_token
    post({"readings": [reading(20, 0.1), reading(10, 0.3)]})
    assert [kwh for _, kwh in stored(meter)] == [Decimal("0.100"), Decimal("0.300")]


def test_timestamp_with_offset_is_stored_in_utc(post, meter_and_token):
    meter, _ = meter_and_token
    post({"timestamp": "2026-11-22T12:30:00+01:00", "energy_kwh": 5})
    assert stored(meter)[0][0] == datetime(2026, 11, 22, 11, 30, tzinfo=UTC)


def test_energy_between_readings_becomes_hourly_usage(post, meter_and_token):
    meter, _ = meter_and_token
    # 10:30 -> 11:30 UTC, 2 kWh: half in each hour, priced at the flat 0.25 EUR/kWh.
    post({"readings": [reading(90, 100), reading(30, 102)]})
    lines = HourlyUsage.objects.filter(meter=meter).order_by("hour_start")
    assert [(line.hour_start.hour, line.kwh, line.cost_eur) for line in lines] == [
        (10, Decimal("1"), Decimal("0.25")),
        (11, Decimal("1"), Decimal("0.25")),
    ]


# --- duplicates and conflicts ---------------------------------------------------------------------


def test_repeated_reading_is_a_duplicate_not_an_error(post, meter_and_token):
    meter, _ = meter_and_token
    post({"readings": [reading(30, 100), reading(15, 101)]})
    response = post({"readings": [reading(30, "100.000"), reading(15, 101)]})
    assert response.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
    assert len(stored(meter)) == 2
    assert HourlyUsage.objects.get(meter=meter).kwh == Decimal("1")


def test_same_timestamp_with_another_value_is_rejected_as_conflict(post, meter_and_token):
    meter, _ = meter_and_token
    post(reading(30, 100))
    response = post({"readings": [reading(30, 100.5), reading(15, 101)]})
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {
                "index": 0,
                "code": "reading.conflict",
                "error": "conflicts with the stored reading of 100.000 kWh at this timestamp",
            }
        ],
    }
    assert stored(meter)[0][1] == Decimal("100")


def test_conflict_inside_one_batch_keeps_the_first(post, meter_and_token):
    meter, _ = meter_and_token
    response = post({"readings": [reading(30, 100), reading(30, 100), reading(30, 107)]})
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (1, 1)
    assert body["rejected"] == [
        {
            "index": 2,
            "code": "reading.conflict",
            "error": "conflicts with the stored reading of 100.000 kWh at this timestamp",
        }
    ]
    assert stored(meter) == [(NOW - timedelta(minutes=30), Decimal("100"))]


# --- rejected readings, one by one ----------------------------------------------------------------


NOT_A_NUMBER = "energy_kwh must be a number or a decimal string"
CODES = {
    "timestamp must include a time zone, e.g. 'Z' or '+01:00'": "reading.naive",
    "timestamp must be an ISO 8601 date-time, e.g. 2026-11-22T10:15:00Z": "reading.bad_timestamp",
    "timestamp must be an ISO 8601 date-time string": "reading.timestamp_not_text",
    "energy_kwh must not be negative": "reading.negative",
    "energy_kwh must be a finite number": "reading.not_finite",
    "energy_kwh has more than 3 decimal places": "reading.too_precise",
    "energy_kwh is too large": "reading.too_large",
    "energy_kwh must be a number or a decimal string": "reading.not_a_number",
    "energy_kwh is required": "reading.missing_field",
    "timestamp is required": "reading.missing_field",
    "unknown field 'meter'": "reading.unknown_field",
    "each reading must be an object with timestamp and energy_kwh": "reading.not_an_object",
}


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (
            {"timestamp": "2026-11-22T11:00:00", "energy_kwh": 1},
            "timestamp must include a time zone, e.g. 'Z' or '+01:00'",
        ),
        (
            {"timestamp": "yesterday", "energy_kwh": 1},
            "timestamp must be an ISO 8601 date-time, e.g. 2026-11-22T10:15:00Z",
        ),
        ({"timestamp": 1763805600, "energy_kwh": 1}, "timestamp must be an ISO 8601 date-time string"),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": -0.001}, "energy_kwh must not be negative"),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": "NaN"}, "energy_kwh must be a finite number"),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": "Infinity"}, "energy_kwh must be a finite number"),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": "1.2345"}, "energy_kwh has more than 3 decimal places"),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": 1e20}, "energy_kwh is too large"),
        (
            {"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": "lots"},
            "energy_kwh must be a number or a decimal string",
        ),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": True}, "energy_kwh must be a number or a decimal string"),
        # Decimal() would take these; a register value is plain digits.
        *(
            ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": text}, NOT_A_NUMBER)
            for text in (" 5", "+5", "1e3", "1_000", "\uff15", "5.")
        ),
        ({"timestamp": "2026-11-22T11:00:00Z"}, "energy_kwh is required"),
        ({"energy_kwh": 1}, "timestamp is required"),
        ({"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": 1, "meter": "other"}, "unknown field 'meter'"),
        ("2026-11-22T11:00:00Z", "each reading must be an object with timestamp and energy_kwh"),
        ([1, 2], "each reading must be an object with timestamp and energy_kwh"),
        (None, "each reading must be an object with timestamp and energy_kwh"),
    ],
)
def test_bad_reading_is_rejected_with_its_code_and_reason_and_others_still_count(post, meter_and_token, item, message):
    meter, _ = meter_and_token
    response = post({"readings": [reading(30, 100), item]})
    assert response.status_code == 200
    code = CODES[message]
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 1, "code": code, "error": message}],
    }
    assert len(stored(meter)) == 1


def test_reading_more_than_five_minutes_ahead_is_rejected(post, meter_and_token):
    meter, _ = meter_and_token
    ahead = {"timestamp": "2026-11-22T12:05:01Z", "energy_kwh": 1}
    just_in = {"timestamp": "2026-11-22T12:05:00Z", "energy_kwh": 1}
    response = post({"readings": [ahead, just_in]})
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [{"index": 0, "code": "reading.future", "error": "timestamp is more than 5 minutes in the future"}],
    }
    assert [t for t, _ in stored(meter)] == [datetime(2026, 11, 22, 12, 5, tzinfo=UTC)]


def test_reading_implying_more_than_max_power_is_rejected(post, make_meter):
    _meter, token = make_meter(max_power_kw="10")
    post(reading(60, 100), token=token)
    # 15 minutes later: 2.5 kWh is exactly 10 kW (allowed); 2.501 kWh is above it.
    response = post({"readings": [reading(45, "102.501")]}, token=token)
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "code": "reading.max_power",
            "error": "implies 10.004 kW since the previous reading, above this meter's maximum of 10 kW",
        }
    ]
    assert post({"readings": [reading(45, "102.500")]}, token=token).json()["accepted"] == 1


def test_late_reading_implying_too_much_power_until_the_next_is_rejected(post, make_meter):
    meter, token = make_meter(max_power_kw="10")
    post({"readings": [reading(60, 100), reading(30, 104)]}, token=token)
    # Between them in time, but its value would need 14 kW to reach the next reading.
    # (Before dips were judged by their neighbours this test sent 97 kWh: a one-off dip, now a glitch.)
    response = post(reading(45, "100.5"), token=token)
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "code": "reading.max_power",
            "error": "implies 14.000 kW until the next reading, above this meter's maximum of 10 kW",
        }
    ]
    assert len(stored(meter)) == 2


def test_register_going_down_is_a_reset_not_negative_use(post, meter_and_token):
    meter, _ = meter_and_token
    response = post({"readings": [reading(90, 5000), reading(60, 5001), reading(30, 2), reading(15, 3)]})
    assert response.json()["accepted"] == 4
    event = MeterEvent.objects.get(meter=meter)
    assert (event.kind, event.previous_kwh, event.new_kwh) == ("reset", Decimal("5001"), Decimal("2"))
    usage = HourlyUsage.objects.filter(meter=meter)
    assert all(line.kwh >= 0 for line in usage)
    assert sum(line.kwh for line in usage) == Decimal("2")  # 1 kWh before the reset, 1 after


# --- whole-request errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ({}, None),
        ({"HTTP_AUTHORIZATION": "Bearer mtr_not-a-real-token"}, None),
        ({"HTTP_AUTHORIZATION": "Basic x"}, None),
    ],
)
def test_missing_or_bad_token_gets_the_same_401(post, headers, token):
    response = post(reading(10, 1), token=token, **headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "invalid_token", "message": "missing or invalid meter token"}}
    assert Reading.objects.count() == 0


def test_inactive_meter_token_is_refused(post, meter_and_token):
    meter, _ = meter_and_token
    Meter.objects.filter(pk=meter.pk).update(is_active=False)
    assert post(reading(10, 1)).status_code == 401


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "body is not valid JSON"),
        ('{"timestamp": "2026-11-22T11:00:00Z", "energy_kwh": NaN}', "body is not valid JSON"),
        ("[" * 100_000, "body is not valid JSON"),
        (b"\xff\xfe\x00", "body is not valid JSON"),
        ("", "body is not valid JSON"),
        ("[]", 'expected a JSON object: {"readings": [...]} or one reading'),
        ('"text"', 'expected a JSON object: {"readings": [...]} or one reading'),
        ('{"readings": {"a": 1}}', 'expected {"readings": [...]} with a list and nothing else'),
        ('{"readings": [], "extra": 1}', 'expected {"readings": [...]} with a list and nothing else'),
        ('{"readings": []}', "readings is empty"),
    ],
)
def test_malformed_body_is_400_and_stores_nothing(post, body, message):
    response = post(body, raw=True)
    assert response.status_code == 400
    code = "invalid_json" if message == "body is not valid JSON" else "invalid_body"
    assert response.json() == {"error": {"code": code, "message": message}}
    assert Reading.objects.count() == 0


def test_more_than_1000_readings_is_413(post):
    items = [reading(2000 - i, i) for i in range(1001)]
    response = post({"readings": items})
    assert response.status_code == 413
    assert response.json() == {"error": {"code": "payload_too_large", "message": "at most 1000 readings per request"}}
    assert Reading.objects.count() == 0


def test_exactly_1000_readings_is_accepted(post):
    items = [reading(2000 - i, i / 100) for i in range(1000)]
    assert post({"readings": items}).json()["accepted"] == 1000


def test_body_over_one_megabyte_is_413(post):
    body = json.dumps({"readings": [reading(10, 1)], "padding": "x" * (1024 * 1024)})
    response = post(body, raw=True)
    assert response.status_code == 413
    assert response.json() == {"error": {"code": "payload_too_large", "message": "request body is over 1048576 bytes"}}


@override_settings(INGEST_RATE_LIMIT_PER_MINUTE=3)
def test_over_the_per_meter_rate_is_429_with_retry_after(post, meter_and_token, make_meter):
    for minutes in (40, 30, 20):
        assert post(reading(minutes, 100 + minutes / 100)).status_code == 200
    response = post(reading(10, 101))
    assert response.status_code == 429
    assert response.json() == {"error": {"code": "rate_limited", "message": "too many requests for this meter"}}
    assert 1 <= int(response["Retry-After"]) <= 60
    assert Reading.objects.count() == 3
    # The budget is per meter: another meter is not slowed down.
    _, other_token = make_meter()
    assert post(reading(10, 1), token=other_token).status_code == 200
    # A new minute, a new budget.
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        assert post(reading(10, 101)).status_code == 200


def test_get_is_405(client):
    response = client.get(URL)
    assert response.status_code == 405
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "use POST"}}


def test_database_failure_is_a_retryable_503_and_the_retry_counts_once(post, meter_and_token, monkeypatch):
    meter, _ = meter_and_token
    from meters import ingest

    real_bulk_create = Reading.objects.bulk_create

    def broken(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(ingest.Reading.objects, "bulk_create", broken)
    response = post({"readings": [reading(30, 100), reading(15, 101)]})
    assert response.status_code == 503
    assert response["Retry-After"]
    assert Reading.objects.count() == 0
    monkeypatch.setattr(ingest.Reading.objects, "bulk_create", real_bulk_create)
    assert post({"readings": [reading(30, 100), reading(15, 101)]}).json()["accepted"] == 2
    assert post({"readings": [reading(30, 100), reading(15, 101)]}).json()["duplicates"] == 2
    assert HourlyUsage.objects.get(meter=meter).kwh == Decimal("1")


# --- isolation between meters -------------------------------------------------------------------


def test_a_token_only_ever_writes_its_own_meter(post, meter_and_token, make_meter):
    meter, token = meter_and_token
    other, other_token = make_meter()
    post(reading(30, 500), token=other_token)
    # Same timestamp, other value: for this token it is a new reading, not a conflict with the other meter.
    response = post(reading(30, 7), token=token)
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert stored(other) == [(NOW - timedelta(minutes=30), Decimal("500"))]
    assert stored(meter) == [(NOW - timedelta(minutes=30), Decimal("7"))]


def test_response_never_reveals_another_meters_data(post, meter_and_token, make_meter):
    other, other_token = make_meter()
    post(reading(30, 4242.5), token=other_token)
    body = post(reading(30, 1)).content.decode()
    assert "4242" not in body
    assert str(other.serial) not in body


@pytest.mark.parametrize("declared", ["lots", "-1", "\uff15", "1.5"])
def test_a_content_length_that_is_not_a_number_is_a_400(post, meter_and_token, declared):
    meter, _ = meter_and_token
    response = post({"readings": [reading(30, 100)]}, CONTENT_LENGTH=declared)
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "bad_request", "message": "Content-Length must be a whole number of bytes"}
    }
    assert stored(meter) == []


# --- cost of the hot path --------------------------------------------------------------------------


def _version_bump() -> int:
    """Statements the household's usage version costs: none on PostgreSQL, where it rides on the line's
    UPDATE in a writable CTE; SQLite has none, so there it is an UPDATE of its own."""
    return 0 if connection.vendor == "postgresql" else 1


# In a test the view runs inside the test's transaction: its BEGIN and COMMIT are a SAVEPOINT and its
# RELEASE, and the fast path's statement runs in a savepoint too (outside a transaction it is its own:
# one statement, tests/meters/test_fastpath.py).
FAST_STATEMENT = 3  # SAVEPOINT, SELECT meters_ingest_reading(...), RELEASE


def test_a_single_in_order_reading_costs_one_statement_fast_and_five_in_python(
    post, django_assert_num_queries, settings, ingest_path
):
    """Fast: the one statement. Python: the meter (locked), the reading, the hour's line (read, update),
    the meter's contact and latest two.

    Checking the billing window and dips costs no statement: the window is compared before, and the
    reading before the latest lives on the meter row.
    """
    settings.USAGE_CHANGED_HOOK = ""
    post({"readings": [reading(60, 100), reading(45, 101)]})
    with django_assert_num_queries(FAST_STATEMENT if ingest_path == "fast" else 7 + _version_bump()):
        assert post(reading(30, 102)).json()["accepted"] == 1


def test_a_reading_that_ends_a_dip_costs_only_its_event_change(post, django_assert_num_queries, settings, ingest_path):
    settings.USAGE_CHANGED_HOOK = ""
    post({"readings": [reading(60, 100), reading(45, 0)]})
    # The glitch turns the reset event into a glitch event (delete + insert): two more, only here. The
    # fast path leaves a reading after a dip to Python, having written nothing.
    fallback = FAST_STATEMENT if ingest_path == "fast" else 0
    with django_assert_num_queries(fallback + 9 + _version_bump()):
        assert post(reading(30, "100.5")).json()["accepted"] == 1
    with django_assert_num_queries(FAST_STATEMENT if ingest_path == "fast" else 7 + _version_bump()):
        assert post(reading(15, "101")).json()["accepted"] == 1
