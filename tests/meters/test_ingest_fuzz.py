"""POST /api/v1/readings under generated bad input: never a 500, always a documented JSON error, no data change.

What "no change" means here: a request refused as a whole (400, 401, 413) or a batch whose readings are
all rejected (200 with ``accepted == 0``) leaves every data table as it was: readings, hourly usage (rows
and their kWh and EUR), meter events, the meter's latest reading, settlements, passes, the ledger. The
meter's contact fields (``last_seen_at``, ``rate_window``, ``rate_count``) may move: a request with a
valid token counts against the meter's per-minute budget even when its body is rejected, which is
right (a meter sending garbage in a loop must still be slowed down). ``test_a_rejected_body_counts_
against_the_budget_and_changes_only_contact_fields`` pins that down; the properties assert on the data.
The rate limit is lifted for the properties so that their hundreds of requests in one frozen minute
exercise the body checks, not the 429.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db.models import Count, Max, Sum
from django.utils import timezone
from hypothesis import HealthCheck, assume, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Meter, MeterEvent, Reading
from meters.schema import ReadingIn
from payments.models import CommunityPass, LedgerTransaction, Settlement, Utxo
from tests.energypay.test_openapi import assert_conforms

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
URL = "/api/v1/readings"
CONTACT_FIELDS = {"last_seen_at", "rate_window", "rate_count"}
FUZZ = hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def data_fingerprint() -> dict[str, Any]:
    """Counts and sums of every table a request could change (row updates show in the sums)."""
    return {
        "readings": Reading.objects.aggregate(n=Count("pk"), kwh=Sum("energy_kwh"), last=Max("pk")),
        "usage": HourlyUsage.objects.aggregate(n=Count("pk"), kwh=Sum("kwh"), eur=Sum("cost_eur"), last=Max("pk")),
        "events": MeterEvent.objects.count(),
        "latest": list(Meter.objects.order_by("pk").values_list("last_reading_at", "last_register_kwh")),
        "settlements": Settlement.objects.count(),
        "coins": Utxo.objects.count(),
        "passes": CommunityPass.objects.count(),
        "ledger": LedgerTransaction.objects.count(),
    }


def meter_row(meter: Meter) -> dict[str, Any]:
    return Meter.objects.filter(pk=meter.pk).values().get()


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def meter(meter_and_token, settings) -> Meter:
    """A meter with three stored readings (10:00, 10:30, 11:00) and their hourly usage, so updates would show."""
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 1_000_000
    meter, _ = meter_and_token
    items = [
        (0, ReadingIn(timestamp="2026-11-22T10:00:00Z", energy_kwh="100")),
        (1, ReadingIn(timestamp="2026-11-22T10:30:00Z", energy_kwh="101")),
        (2, ReadingIn(timestamp="2026-11-22T11:00:00Z", energy_kwh="102")),
    ]
    assert ingest_readings(meter.pk, items, timezone.now()).accepted == 3
    meter.refresh_from_db()
    return meter


def send(client, body: bytes | str, token: str | None, content_type: str = "application/json", **extra: str):
    if token is not None:
        extra.setdefault("HTTP_AUTHORIZATION", f"Bearer {token}")
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")  # generated text may hold lone surrogates: bytes as given
    # generic(): the bytes go out as they are, whatever charset the content type names.
    return client.generic("POST", URL, body, content_type=content_type, **extra)


def assert_unchanged_if_nothing_accepted(response, before: dict, meter: Meter, row_before: dict) -> Any:
    """The response is documented; with nothing accepted, no data changed and only contact fields moved."""
    assert response.status_code != 500
    body = assert_conforms(response, URL, "post")
    assert response.status_code in (200, 400, 401, 413, 415), response.status_code
    event(f"status={response.status_code}")  # --hypothesis-show-statistics: which answers the inputs reached
    if response.status_code == 200 and body["accepted"]:
        return body
    assert data_fingerprint() == before, body
    changed = {name for name, value in meter_row(meter).items() if row_before[name] != value}
    assert changed <= CONTACT_FIELDS, changed
    return body


# --- strategies -----------------------------------------------------------------------------------


def accepted_field(name: str, value: object) -> bool:
    """Whether the schema takes ``value`` for field ``name`` (so a generated "bad" value surely is bad)."""
    reading = {"timestamp": "2026-11-22T10:00:00Z", "energy_kwh": "1", name: value}
    try:
        ReadingIn.model_validate(reading)
    except ValidationError:
        return False
    return True


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)  # json.dumps writes NaN / Infinity literals: not JSON
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)

# Within six hours: a reading years away from the others would spread its energy over every hour between.
past = st.datetimes(min_value=datetime(2026, 11, 22, 6), max_value=datetime(2026, 11, 22, 11, 59)).map(
    lambda moment: moment.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z")
)
good_energy = st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False).map(str)
bad_timestamp = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.text(max_size=40).filter(lambda text: not accepted_field("timestamp", text)),
    st.datetimes().map(lambda moment: moment.isoformat()),  # no time zone
    st.datetimes(min_value=datetime(2026, 11, 22, 12, 5, 1), max_value=datetime(9999, 12, 31)).map(
        lambda moment: moment.isoformat() + "Z"  # more than 5 minutes ahead
    ),
    st.sampled_from(
        [
            "2026-02-30T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2026-11-22T10:00:00+25:00",
            "2026-11-22T25:00:00Z",
            "2026-11-22",
            "",
            "\u0662\u0660\u0662\u0666-11-22T10:00:00Z",  # Arabic-Indic digits
            "2026-11-22T10:00:00Z\x00",
        ]
    ),
)
bad_energy = st.one_of(
    st.integers(max_value=-1),
    st.decimals(max_value=Decimal("-0.001"), places=3, allow_nan=False).map(str),
    st.integers(min_value=10**12, max_value=10**4000),  # too large, or too long for Python's int parser
    st.floats(min_value=1e12, allow_infinity=False),
    st.tuples(st.integers(0, 10**6), st.integers(1, 9)).map(lambda t: f"{t[0]}.123{t[1]}"),  # 4 decimals
    st.sampled_from(["NaN", "nan", "Infinity", "-Infinity", "inf", "1e999", "-1e-999", "0x10", "", " ", "½"]),
    st.booleans(),
    st.none(),
    st.lists(st.integers(0, 10), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    # Any text the schema refuses (plain digits with up to 3 decimals are all it takes).
    st.text(max_size=20).filter(lambda text: not accepted_field("energy_kwh", text)),
)
extra_key = st.text(max_size=12).filter(lambda key: key not in ("timestamp", "energy_kwh"))
bad_reading = st.one_of(
    st.fixed_dictionaries({"timestamp": bad_timestamp, "energy_kwh": good_energy | bad_energy}),
    st.fixed_dictionaries({"timestamp": past, "energy_kwh": bad_energy}),
    st.fixed_dictionaries({"timestamp": past}),
    st.fixed_dictionaries({"energy_kwh": good_energy}),
    st.builds(lambda t, e, k, v: {"timestamp": t, "energy_kwh": e, k: v}, past, good_energy, extra_key, json_values),
    json_values.filter(lambda value: not isinstance(value, dict)),
)
bad_batch = st.one_of(
    bad_reading,
    st.lists(bad_reading, min_size=1, max_size=20).map(lambda items: {"readings": items}),
    # Big arrays around the 1000-readings limit (one bad reading repeated: generated once, cheap).
    st.tuples(st.sampled_from([999, 1000, 1001, 5000]), bad_reading).map(lambda t: {"readings": [t[1]] * t[0]}),
)


def encode(value: Any) -> str:
    return json.dumps(value)


def finite(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def nested(depth: int, opener: str = "[", closer: str = "]") -> str:
    return opener * depth + closer * depth


raw_bodies = st.one_of(
    json_values.map(encode),
    st.text(max_size=200),
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.integers(1, 300_000).map(nested),
    st.integers(1, 100_000).map(lambda depth: '{"readings": ' + nested(depth) + "}"),
    st.integers(1, 50_000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.integers(4300, 6000).map(
        lambda digits: '{"timestamp": "2026-11-22T10:00:00Z", "energy_kwh": 1' + "0" * digits + "}"
    ),
    st.sampled_from(
        [
            "NaN",
            "Infinity",
            "-Infinity",
            '{"timestamp": "2026-11-22T10:00:00Z", "energy_kwh": NaN}',
            '{"readings": [{"timestamp": "2026-11-22T10:00:00Z", "energy_kwh": -Infinity}]}',
            '{"readings": [], "readings": [1]}',
            '{"readings": null}',
            "\ufeff{}",
            "{}",
            "[]",
            "null",
            "1e99999",
        ]
    ),
    st.integers(0, 64).map(lambda extra: '{"readings": [' + "1," * (1024 * 1024 // 2 + extra) + "1]}"),  # > 1 MiB
)
content_types = st.one_of(
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-16",
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=xyz",
            "application/octet-stream",
            "",
        ]
    ),
    st.text(max_size=40).filter(lambda text: "\n" not in text and "\r" not in text),
)
authorizations = st.one_of(
    st.text(max_size=300),
    st.text(max_size=300).map(lambda text: "Bearer " + text),
    st.text(max_size=300).map(lambda text: "Bearer mtr_" + text),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=43, max_size=43).map(
        lambda text: "Bearer mtr_" + text  # the shape of a real token
    ),
    st.sampled_from(["Bearer", "Bearer ", "bearer", "Basic dXNlcjpwYXNz", "Token mtr_x", "Bearer mtr_" + "a" * 10_000]),
)


# --- properties -----------------------------------------------------------------------------------


@FUZZ
@given(body=bad_batch)
def test_readings_that_are_all_bad_are_rejected_one_by_one_and_store_nothing(client, meter, meter_and_token, body):
    _, token = meter_and_token
    before, row_before = data_fingerprint(), meter_row(meter)
    response = send(client, encode(body), token)
    result = assert_unchanged_if_nothing_accepted(response, before, meter, row_before)
    if response.status_code == 200:
        count = len(body["readings"]) if "readings" in body else 1
        assert (result["accepted"], result["duplicates"]) == (0, 0)
        assert [item["index"] for item in result["rejected"]] == list(range(count))


@FUZZ
@given(body=raw_bodies, content_type=content_types)
def test_any_body_with_any_content_type_is_a_documented_answer_and_changes_nothing_unless_accepted(
    client, meter, meter_and_token, body, content_type
):
    _, token = meter_and_token
    before, row_before = data_fingerprint(), meter_row(meter)
    response = send(client, body, token, content_type=content_type)
    result = assert_unchanged_if_nothing_accepted(response, before, meter, row_before)
    if response.status_code == 200:
        assert result["accepted"] == 0  # nothing these bodies hold is a valid reading


@FUZZ
@given(authorization=authorizations, body=bad_batch | st.just({"timestamp": "2026-11-22T11:30:00Z", "energy_kwh": 1}))
def test_any_authorization_but_the_meters_token_is_a_401_that_changes_nothing(client, meter, authorization, body):
    before, row_before = data_fingerprint(), meter_row(meter)
    response = send(client, encode(body), None, HTTP_AUTHORIZATION=authorization)
    assert response.status_code == 401, response.content
    assert_conforms(response, URL, "post")
    assert data_fingerprint() == before
    assert meter_row(meter) == row_before  # not even the contact fields: nobody was recognised


@FUZZ
@given(body=raw_bodies | bad_batch.map(encode), declared=st.one_of(st.integers(0, 64), st.text(max_size=12)))
@example(body="", declared="1")  # digits as text, longer than the body: found once in CI
def test_a_content_length_that_lies_is_a_documented_answer(client, meter, meter_and_token, body, declared):
    """A declared length that is shorter than the body (cut JSON) or not a number at all."""
    _, token = meter_and_token
    size = len(body.encode() if isinstance(body, str) else body)
    if isinstance(declared, str) and declared.isascii() and declared.isdigit():
        declared = int(declared)  # a number after all: the same rule as for generated ints
    if isinstance(declared, int):
        declared = min(declared, size)  # longer than the body would make the server wait for bytes never sent
    before, row_before = data_fingerprint(), meter_row(meter)
    response = send(client, body, token, CONTENT_LENGTH=str(declared))
    assert_unchanged_if_nothing_accepted(response, before, meter, row_before)


# Near the stored register (100 to 102 kWh from 10:00 to 11:00), so many pass the power check and get stored.
good_reading = st.fixed_dictionaries(
    {"timestamp": past, "energy_kwh": st.decimals(min_value=95, max_value=125, places=3).map(str)}
)


@hypothesis_settings(FUZZ, max_examples=100)
@given(items=st.lists(st.tuples(st.booleans(), good_reading, bad_reading), min_size=1, max_size=12))
def test_in_a_mixed_batch_every_bad_reading_is_rejected_and_only_accepted_ones_are_stored(
    client, meter, meter_and_token, items
):
    """Bad readings beside good ones: each bad one is rejected by index; the rows added are exactly those accepted."""
    _, token = meter_and_token
    batch = [good if is_good else bad for is_good, good, bad in items]
    assume(finite(batch))  # a NaN or Infinity literal makes the whole body a 400: the other properties see those
    bad_indexes = {index for index, (is_good, _, _) in enumerate(items) if not is_good}
    readings_before = Reading.objects.count()
    response = send(client, encode({"readings": batch}), token)
    body = assert_conforms(response, URL, "post")
    assert response.status_code == 200
    assert bad_indexes <= {item["index"] for item in body["rejected"]}
    assert body["accepted"] + body["duplicates"] + len(body["rejected"]) == len(batch)
    assert Reading.objects.count() - readings_before == body["accepted"]
    event(f"accepted={min(body['accepted'], 2)}")


# --- the decision about contact fields, pinned -----------------------------------------------------


def test_a_rejected_body_counts_against_the_budget_and_changes_only_contact_fields(client, meter, meter_and_token):
    _, token = meter_and_token
    before, row_before = data_fingerprint(), meter_row(meter)
    later = NOW + timedelta(seconds=30)
    with time_machine.travel(later, tick=False):
        response = send(client, "{not json", token)
    assert response.status_code == 400
    assert data_fingerprint() == before
    row = meter_row(meter)
    assert row["last_seen_at"] == later
    assert row["rate_count"] == (row_before["rate_count"] + 1 if row_before["rate_window"] == row["rate_window"] else 1)
    assert {name for name in row if row[name] != row_before[name]} <= CONTACT_FIELDS


def test_a_rejected_body_is_still_slowed_down_by_the_rate_limit(client, meter, meter_and_token, settings):
    _, token = meter_and_token
    settings.INGEST_RATE_LIMIT_PER_MINUTE = 2
    answers = [send(client, "{not json", token).status_code for _ in range(3)]
    assert answers == [400, 400, 429]


def test_the_fingerprint_sees_an_update_of_a_stored_row(meter):
    """The "no change" check can fail: an UPDATE that keeps the row count is caught."""
    before = data_fingerprint()
    HourlyUsage.objects.filter(meter=meter).update(kwh=Decimal("9"))
    assert data_fingerprint() != before
