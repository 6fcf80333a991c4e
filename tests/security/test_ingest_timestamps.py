"""Ingest under hostile timestamps, energy values and bodies: bounded work, JSON answers, nothing billed.

Issue 11, findings 3 and 4: timestamps at the edges of what datetime holds used to spread a reading
over millions of hours under the meter's lock (20-30 s, then a 200 or an HTML 500) or raise
OverflowError; a body slower than its Content-Length held the meter's lock until gunicorn killed the
worker. Every answer here must be JSON 200/400/413/415, well under a second, and a rejected reading
must bill nothing.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIRequest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from hypothesis import example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from lib.interpolation import billing_points
from meters.api import readings as readings_view
from meters.ingest import ingest_readings
from meters.models import HeldReading, HourlyUsage, Meter, Reading
from meters.schema import ReadingIn
from tests.meters.test_ingest_fuzz import FUZZ as INGEST_FUZZ

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "/api/v1/readings"
WELL_UNDER_A_SECOND = 1.0
FUZZ = hypothesis_settings(INGEST_FUZZ, max_examples=300)

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def meter(meter_and_token, settings) -> Meter:
    """A meter with two readings an hour apart, so a bad one would have something to bill against."""
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1_000_000
    settings.USAGE_CHANGED_HOOK = ""
    meter, _ = meter_and_token
    items = [
        (0, ReadingIn(timestamp=NOW - timedelta(hours=2), energy_kwh="5000")),
        (1, ReadingIn(timestamp=NOW - timedelta(hours=1), energy_kwh="5001")),
    ]
    assert ingest_readings(meter.pk, items, NOW).accepted == 2
    return meter


def send(client, token: str, body: bytes | str, content_type: str = "application/json", **extra: str):
    started = time.perf_counter()
    response = client.generic(
        "POST", URL, body, content_type=content_type, HTTP_AUTHORIZATION=f"Bearer {token}", **extra
    )
    elapsed = time.perf_counter() - started
    assert elapsed < WELL_UNDER_A_SECOND, f"{elapsed:.2f} s"
    assert response.status_code in (200, 400, 413, 415), (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    return response, json.loads(response.content)


def ledger_is_the_readings(meter: Meter) -> None:
    """Usage is exactly what the stored readings imply: no rejected reading billed anything."""
    points = list(Reading.objects.filter(meter=meter).order_by("timestamp").values_list("timestamp", "energy_kwh"))
    rises = sum((b - a for (_, a), (_, b) in itertools.pairwise(billing_points(points)) if b > a), Decimal(0))
    billed = sum(HourlyUsage.objects.filter(meter=meter).values_list("kwh", flat=True), Decimal(0))
    assert billed == rises


def usage_fingerprint() -> list[tuple[Any, ...]]:
    return list(HourlyUsage.objects.order_by("pk").values_list("pk", "kwh", "cost_eur"))


# Every fixed offset datetime accepts: -23:59 to +23:59, to the minute and with seconds.
offsets = st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)).map(
    timezone
)
any_moment = st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=offsets)
near_now = st.datetimes(
    min_value=datetime(2026, 11, 1), max_value=datetime(2026, 11, 22, 12, 10), timezones=st.just(UTC)
)
edges = st.sampled_from(
    [
        "0001-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00-23:59",
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:59:59.999999-23:59",
        "9999-12-31T23:59:59.999999+23:59",
        "9999-12-31T23:00:00Z",
        "1970-01-01T00:00:00Z",
        "2025-11-22T12:00:00Z",  # a year back: the reading
    ]
)


def iso(moment: datetime) -> str:
    return moment.isoformat()


timestamps = st.one_of(any_moment.map(iso), near_now.map(iso), edges)
energies = st.one_of(
    st.just(0),
    st.integers(min_value=0, max_value=10**15),
    st.integers(min_value=10**15, max_value=10**400),
    st.decimals(min_value=0, max_value=10**12, places=3).map(str),
    st.floats(min_value=0, allow_nan=False, allow_infinity=False),  # 1e308, 5e-324, ...
    st.sampled_from(["1e999999999", "1E-999999999", "0E+1000", "0e-1000", "999999999999.999", "1000000000000.000"]),
    st.tuples(st.integers(0, 9), st.integers(-(10**6), 10**6)).map(lambda t: f"{t[0]}e{t[1]}"),
)


def number_text(value: Any) -> str:
    """A JSON number from a generated value; exponent strings become raw JSON numbers too."""
    if isinstance(value, str) and ("e" in value.lower()) and value[0].isdigit():
        return value
    return json.dumps(value)


@st.composite
def bodies(draw) -> str:
    items = draw(st.lists(st.tuples(timestamps, energies, st.booleans()), min_size=1, max_size=4))
    rendered = [
        f'{{"timestamp": {json.dumps(ts)}, "energy_kwh": {number_text(kwh) if raw else json.dumps(str(kwh))}}}'
        for ts, kwh, raw in items
    ]
    return '{"readings": [' + ", ".join(rendered) + "]}"


@FUZZ
@given(body=bodies())
@example(body='{"readings": [{"timestamp": "0001-01-01T00:00:00-23:59", "energy_kwh": 0}]}')
@example(body='{"readings": [{"timestamp": "9999-12-31T23:59:59.999999-23:59", "energy_kwh": 1e308}]}')
@example(body='{"readings": [{"timestamp": "2025-11-22T12:00:00Z", "energy_kwh": 0}]}')
def test_any_timestamp_and_energy_is_a_quick_json_answer_and_rejected_readings_bill_nothing(
    client, meter, meter_and_token, body
):
    _, token = meter_and_token
    before = usage_fingerprint()
    response, answer = send(client, token, body)
    if response.status_code == 200:
        assert all(item["code"].startswith("reading.") for item in answer["rejected"])
        if answer["accepted"] == 0:
            assert usage_fingerprint() == before
    else:
        assert set(answer) == {"error"}
        assert usage_fingerprint() == before
    ledger_is_the_readings(meter)


@pytest.mark.parametrize(
    ("timestamp", "code"),
    [
        ("0001-01-01T00:00:00+01:00", "reading.out_of_range"),  # before year 1 in UTC
        ("0001-01-01T00:00:00-23:59", "reading.out_of_range"),
        ("1970-01-01T00:00:00Z", "reading.out_of_range"),  # before the meter's installation (2020) and its window
        ("9999-12-31T23:59:59.999999-00:01", "reading.future"),  # after year 9999 in UTC
        ("9999-12-31T23:30:00Z", "reading.future"),  # its hour's end is past datetime.max
        ("2025-11-22T12:00:00Z", "reading.too_old"),
    ],
)
def test_timestamps_at_the_edges_are_refused_in_milliseconds(client, meter, meter_and_token, timestamp, code):
    _, token = meter_and_token
    before = usage_fingerprint()
    started = time.perf_counter()
    response, answer = send(client, token, json.dumps({"timestamp": timestamp, "energy_kwh": 0}))
    assert time.perf_counter() - started < 0.3
    assert response.status_code == 200
    assert [item["code"] for item in answer["rejected"]] == [code]
    assert usage_fingerprint() == before
    assert Reading.objects.filter(meter=meter).count() == 2
    assert HeldReading.objects.filter(meter=meter).count() == (1 if code == "reading.too_old" else 0)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/jsonx"])
def test_a_body_that_is_not_declared_json_is_a_415(client, meter, meter_and_token, content_type):
    _, token = meter_and_token
    body = json.dumps({"timestamp": (NOW - timedelta(minutes=10)).isoformat(), "energy_kwh": "5001.1"})
    response, answer = send(client, token, body, content_type=content_type, CONTENT_TYPE=content_type)
    assert response.status_code == 415
    assert answer == {"error": {"code": "unsupported_media_type", "message": "Content-Type must be application/json"}}
    assert Reading.objects.filter(meter=meter).count() == 2


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_with_parameters_or_another_case_is_accepted(client, meter, meter_and_token, content_type):
    _, token = meter_and_token
    body = json.dumps({"timestamp": (NOW - timedelta(minutes=10)).isoformat(), "energy_kwh": "5001.1"})
    _, answer = send(client, token, body, content_type=content_type)
    assert answer == {"accepted": 1, "duplicates": 0, "rejected": []}


# --- the body is read before any lock or transaction (finding 4) ------------------------------------------


class SlowBody(io.RawIOBase):
    """A client's body: sends ``data``, then nothing more (it declared more; the connection stays open).

    Records, when the server reads it, whether the server had already opened a transaction
    (a savepoint inside the test's own) or sent any SQL, such as the meter's row lock.
    """

    def __init__(self, data: bytes, queries: CaptureQueriesContext):
        self.data, self.queries, self.reads = io.BytesIO(data), queries, []

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads.append((len(connection.savepoint_ids), len(self.queries.captured_queries)))
        return self.data.read(size)

    def readline(self, size: int = -1) -> bytes:
        return self.read(size)


def slow_request(
    token: str, body: bytes, declared: int, stream_factory=SlowBody, queries=None
) -> tuple[WSGIRequest, Any]:
    environ = RequestFactory()._base_environ(
        PATH_INFO=URL,
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(declared),
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    stream = stream_factory(body, queries)
    environ["wsgi.input"] = stream
    return WSGIRequest(environ), stream


def test_the_body_is_read_before_the_meter_is_locked_or_a_transaction_opened(meter, meter_and_token):
    _, token = meter_and_token
    whole = json.dumps({"timestamp": (NOW - timedelta(minutes=10)).isoformat(), "energy_kwh": "5001.1"}).encode()
    body = whole[: len(whole) // 2]  # the client stops half-way
    savepoints = len(connection.savepoint_ids)
    with CaptureQueriesContext(connection) as queries:
        request, stream = slow_request(token, body, declared=len(whole), queries=queries)
        response = readings_view(request)
    assert stream.reads, "the body was never read"
    assert all(reading == (savepoints, 0) for reading in stream.reads), stream.reads
    # The body ended early: cut JSON is a 400, answered as JSON; nothing stored.
    assert response.status_code == 400
    assert json.loads(response.content) == {"error": {"code": "invalid_json", "message": "body is not valid JSON"}}
    assert Reading.objects.filter(meter=meter).count() == 2


class BrokenBody(SlowBody):
    def read(self, size: int = -1) -> bytes:
        super().read(size)
        raise OSError("client went away")


def test_a_body_that_breaks_off_is_a_json_400(meter, meter_and_token):
    _, token = meter_and_token
    with CaptureQueriesContext(connection) as queries:
        request, _ = slow_request(token, b"{}", declared=500, stream_factory=BrokenBody, queries=queries)
        response = readings_view(request)
    assert response.status_code == 400
    assert json.loads(response.content) == {
        "error": {"code": "bad_request", "message": "request body could not be read"}
    }
