"""GET /api/v1/community under generated bad payments: always the documented 402, never a row.

tests/payments/test_x402.py already fuzzes the header's outer layers (random text, random base64,
base64 of random JSON, roughly shaped payloads) and checks for a 402 without a pass. This file adds what
that leaves out:
- near-valid payments: a real signed transaction paying the price, mutated byte by byte (flipped,
  deleted, inserted, cut, extended) or character by character in its hex, which must all be refused
  by parsing, by the price check or by the network's script check;
- JSON text the encoder would never write (NaN / Infinity literals, deep nesting, huge numbers,
  duplicate keys, unicode), headers around the 100,000-character cap;
- every answer checked against docs/openapi.yaml, and every table compared before and after (the
  ledger, passes, coins, readings, usage: ``data_fingerprint``), not only the pass table.
After the fuzzing the untouched payment still buys access: the refusals were for the mutations.
"""

from __future__ import annotations

import base64
import json

import pytest
from bsv import PrivateKey, Transaction
from django.conf import settings
from hypothesis import event, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from payments import keys
from payments.models import CommunityPass, LedgerTransaction
from tests.energypay.test_openapi import assert_conforms, pay, payment_header
from tests.meters.test_ingest_fuzz import FUZZ, data_fingerprint
from tests.payments.x402kit import NOW, PRICE, URL

pytestmark = [pytest.mark.time_machine(NOW, tick=False), pytest.mark.usefixtures("community_price")]


@pytest.fixture
def payment(faucet) -> Transaction:
    """A signed transaction paying PRICE to the utility from a fresh faucet coin: valid, not yet sent."""
    key = PrivateKey()
    coin = faucet(key.address(network=keys.address_network()), 50_000)
    return pay(coin, key, PRICE)


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text).decode()


def refusal_status(value: str) -> int:
    """402 for a payment that buys nothing; 431 past the documented header size (energypay/middleware.py)."""
    return 431 if len(value) > settings.API_MAX_PAYMENT_HEADER_BYTES else 402


def assert_refused_without_a_trace(client, value: str) -> dict:
    before = data_fingerprint()
    response = client.get(URL, headers={"X-PAYMENT": value})
    assert response.status_code == refusal_status(value), response.content[:500]
    body = assert_conforms(response, URL, "get")
    assert data_fingerprint() == before
    return body


def mutate(raw: bytes, kind: str, position: int, data: bytes) -> bytes:
    at = position % len(raw)
    if kind == "flip":
        return raw[:at] + bytes([raw[at] ^ (data[0] or 1)]) + raw[at + 1 :]
    if kind == "delete":
        return raw[:at] + raw[at + 1 + len(data) % 8 :]
    if kind == "insert":
        return raw[:at] + data + raw[at:]
    if kind == "cut":
        return raw[:at]
    return raw + data  # "append"


mutations = st.tuples(
    st.sampled_from(["flip", "flip", "flip", "delete", "insert", "cut", "append"]),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=8),
)


@FUZZ
@given(mutation=mutations)
def test_a_real_payment_mutated_byte_by_byte_is_refused_and_leaves_no_trace(client, payment, mutation):
    kind, position, data = mutation
    raw = mutate(bytes.fromhex(payment.hex()), kind, position, data)
    body = assert_refused_without_a_trace(client, payment_header(raw.hex()))
    event(body["error"].split(":")[0][:60])  # --hypothesis-show-statistics: which check refused it


@FUZZ
@given(
    position=st.integers(min_value=0, max_value=10_000),
    char=st.characters(exclude_characters="0123456789abcdefABCDEF \t\n\r\x0b\x0c"),
)
def test_a_real_payment_with_one_hex_digit_replaced_by_a_non_digit_is_refused(client, payment, position, char):
    text = payment.hex()
    at = position % len(text)
    assert_refused_without_a_trace(client, payment_header(text[:at] + char + text[at + 1 :]))


def test_the_untouched_payment_still_pays_after_all_the_refusals(client, payment):
    """Refusals of mutated copies burned nothing: the coin is unspent and the original buys access."""
    for kind in ("flip", "delete", "insert", "cut", "append"):
        mutated = mutate(bytes.fromhex(payment.hex()), kind, 40, b"\x07")
        assert_refused_without_a_trace(client, payment_header(mutated.hex()))
    response = client.get(URL, headers={"X-PAYMENT": payment_header(payment.hex())})
    assert response.status_code == 200, response.content
    assert_conforms(response, URL, "get")
    assert CommunityPass.objects.get().txid == payment.txid()


def test_an_output_worth_more_than_all_coins_is_refused_not_a_500(client, payment):
    """Found by the fuzz above: an 8-byte output value over 2**63 overflowed the database (a 500)."""
    raw = bytearray(bytes.fromhex(payment.hex()))
    value_at = raw.index(payment.outputs[0].locking_script.serialize()) - 1 - 8  # value, script length, script
    raw[value_at : value_at + 8] = (2**64 - 1).to_bytes(8, "little")
    body = assert_refused_without_a_trace(client, payment_header(raw.hex()))
    assert "more satoshis than exist" in body["error"]


def test_the_same_payment_in_another_spelling_is_the_same_payment_redeemed_once(client, payment):
    """Upper-case hex, spaced base64, reordered JSON: one transaction, one pass, one charge, one token."""
    first = client.get(URL, headers={"X-PAYMENT": payment_header(payment.hex())})
    reordered = json.dumps(
        {"payload": {"transaction": payment.hex().upper()}, "network": "bsv:local", "scheme": "exact", "x402Version": 1}
    )
    second = client.get(URL, headers={"X-PAYMENT": "  " + b64(reordered) + "\t"})
    assert first.status_code == 200
    assert second.status_code == 402
    assert "already redeemed" in assert_conforms(second, URL, "get")["error"]
    assert CommunityPass.objects.count() == 1
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 1


def envelope(transaction: str) -> str:
    return (
        '{"x402Version": 1, "scheme": "exact", "network": "bsv:local", "payload": {"transaction": ' + transaction + "}}"
    )


json_texts = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999999", '"' + "\\ud800" + '"']).map(envelope),
    st.sampled_from(
        [
            '{"x402Version": NaN, "scheme": "exact", "network": "bsv:local", "payload": {"transaction": "00"}}',
            '{"x402Version": 1.0, "scheme": "exact", "network": "bsv:local", "payload": {"transaction": "00"}}',
            '{"x402Version": 1, "x402Version": 2, "scheme": "exact", "network": "bsv:local", "payload": {}}',
            '{"x402Version": 1, "scheme": "exact", "network": "bsv:local", "payload": {"transaction": "00"}} trailing',
            '{"x402Version": 1, "scheme": "\u0435xact", "network": "bsv:local", "payload": {"transaction": "00"}}',
            '{"x402Version": 1, "scheme": "exact", "network": "BSV:LOCAL", "payload": {"transaction": "00"}}',
            "\ufeff{}",
            "",
        ]
    ),
    st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 50_000).map(lambda depth: envelope("[" * depth + "]" * depth)),
    st.integers(4300, 40_000).map(lambda digits: '{"x402Version": 1' + "0" * digits + "}"),
    st.text(max_size=60).map(lambda text: envelope(json.dumps(text, ensure_ascii=False))),
    st.binary(max_size=400).map(lambda data: envelope('"' + data.hex() + '"')),  # hex of anything: not a payment
)
header_values = st.one_of(
    json_texts.map(b64),
    st.integers(32_760, 32_780).map(lambda size: "A" * size),  # around the documented limit (32 KiB)
    st.integers(99_990, 100_010).map(lambda size: "A" * size),
    st.integers(99_990, 100_010).map(lambda size: b64("x" * (size * 3 // 4))[:size]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_", max_size=200),
)


@FUZZ
@given(value=header_values)
def test_json_the_encoder_would_never_write_and_oversized_headers_are_documented_refusals(client, db, value):
    assert_refused_without_a_trace(client, value)


@hypothesis_settings(FUZZ, max_examples=50)
@given(value=header_values)
def test_head_with_a_bad_payment_is_a_402_without_a_body(client, db, value):
    response = client.head(URL, headers={"X-PAYMENT": value})
    assert response.status_code == refusal_status(value)
    assert_conforms(response, URL, "head")
    assert not CommunityPass.objects.exists()
