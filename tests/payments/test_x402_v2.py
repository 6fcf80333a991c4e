"""GET /api/v1/community in x402 version 2: PAYMENT-REQUIRED out, PAYMENT-SIGNATURE in, PAYMENT-RESPONSE back.

Every header is built and read with the official ``x402`` package (PyPI ``x402``, its v2 pydantic
types and header codecs in ``x402.schemas`` and ``x402.http.utils``), as an x402 client would: what
it cannot parse, or would parse only by dropping fields, fails here. Version 1 keeps working beside it
(tests/payments/test_x402.py).
"""

from __future__ import annotations

import base64
import json

import pytest
from bsv import PrivateKey, Transaction
from django.conf import settings
from x402.http.constants import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER
from x402.http.utils import (
    decode_payment_required_header,
    decode_payment_response_header,
    encode_payment_signature_header,
)
from x402.schemas import PaymentPayload, PaymentRequired, SettleResponse

from payments import keys
from payments.models import CommunityPass, LedgerTransaction
from tests.payments.test_x402 import header as v1_header
from tests.payments.test_x402 import pay
from tests.payments.x402kit import NOW, PRICE, URL

pytestmark = [pytest.mark.time_machine(NOW, tick=False), pytest.mark.usefixtures("community_price")]


@pytest.fixture
def client_key() -> PrivateKey:
    return PrivateKey()


@pytest.fixture
def coin(client_key, faucet) -> Transaction:
    return faucet(client_key.address(network=keys.address_network()), 50_000)


def required(response) -> PaymentRequired:
    """PAYMENT-REQUIRED read by the x402 package, which must keep every field the server sent."""
    raw = json.loads(base64.b64decode(response[PAYMENT_REQUIRED_HEADER]))
    parsed = decode_payment_required_header(response[PAYMENT_REQUIRED_HEADER])
    assert isinstance(parsed, PaymentRequired)
    assert parsed.model_dump(by_alias=True, exclude_none=True) == raw  # nothing unknown, nothing lost
    return parsed


def settled(response) -> SettleResponse:
    raw = json.loads(base64.b64decode(response[PAYMENT_RESPONSE_HEADER]))
    parsed = decode_payment_response_header(response[PAYMENT_RESPONSE_HEADER])
    assert parsed.model_dump(by_alias=True, exclude_none=True) == raw
    return parsed


def signature(offer: PaymentRequired, tx: Transaction, **accepted_changes) -> str:
    """PAYMENT-SIGNATURE as an x402 client builds it: the requirements it accepts, our transaction as payload."""
    accepted = offer.accepts[0].model_copy(update=accepted_changes)
    payload = PaymentPayload(payload={"transaction": tx.hex()}, accepted=accepted, resource=offer.resource)
    return encode_payment_signature_header(payload)


def get(client, **headers):
    return client.get(URL, headers=headers)


def test_the_402_carries_payment_required_for_x402_v2_beside_the_v1_body(client, db):
    response = get(client)

    assert response.status_code == 402
    assert response.json()["x402Version"] == 1  # v1 clients read the body as before
    offer = required(response)
    assert offer.x402_version == 2 and PAYMENT_SIGNATURE_HEADER in offer.error
    assert offer.resource.url == "http://testserver/api/v1/community"
    assert offer.resource.mime_type == "application/json"
    [accepts] = offer.accepts
    assert (accepts.scheme, accepts.network, accepts.asset) == ("exact", "bsv:local", "BSV")
    assert (accepts.amount, accepts.pay_to) == (str(PRICE), keys.utility_address())
    assert accepts.max_timeout_seconds == 60 and accepts.extra["accessDays"] == settings.COMMUNITY_ACCESS_DAYS
    assert PAYMENT_REQUIRED_HEADER in response["Access-Control-Expose-Headers"]


def test_a_v2_payment_is_redeemed_and_answered_with_payment_response_and_a_token(client, client_key, coin):
    tx = pay(coin, client_key, PRICE)

    response = get(client, **{PAYMENT_SIGNATURE_HEADER: signature(required(get(client)), tx)})

    assert response.status_code == 200, response.content
    answer = settled(response)
    assert answer.success and answer.transaction == tx.txid() and answer.network == "bsv:local"
    assert answer.payer == client_key.address(network=keys.address_network())
    assert answer.amount == str(PRICE)
    token = answer.extra["accessToken"]
    assert token.startswith("cpa_") and response.json()["accessToken"] == token
    assert "X-PAYMENT-RESPONSE" not in response
    assert response["Access-Control-Expose-Headers"] == PAYMENT_RESPONSE_HEADER
    assert LedgerTransaction.objects.filter(txid=tx.txid()).exists()  # broadcast
    community_pass = CommunityPass.objects.get()
    assert (community_pass.txid, community_pass.source, community_pass.state) == (tx.txid(), "x402", "seen")
    # The token opens the data, whichever version bought it.
    assert client.get(URL, headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_same_v2_payment_again_is_refused_in_v2_and_charges_nothing(client, client_key, coin):
    tx = pay(coin, client_key, PRICE)
    value = signature(required(get(client)), tx)
    assert get(client, **{PAYMENT_SIGNATURE_HEADER: value}).status_code == 200

    again = get(client, **{PAYMENT_SIGNATURE_HEADER: value})

    assert again.status_code == 402
    assert again.json()["x402Version"] == 2  # answered in the version it paid with
    assert PaymentRequired.model_validate(again.json()).error == required(again).error
    assert "already redeemed" in required(again).error
    assert CommunityPass.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"amount": "1"}, "amount"),
        ({"pay_to": "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"}, "payTo"),
        ({"max_timeout_seconds": 3600}, "maxTimeoutSeconds"),
        ({"extra": {}}, "extra.unit"),
        ({"network": "bsv:mainnet"}, "network"),
        ({"scheme": "upto"}, "scheme"),
    ],
)
def test_a_payment_accepting_other_requirements_than_offered_is_refused_and_not_broadcast(
    client, client_key, coin, change, named
):
    tx = pay(coin, client_key, PRICE)

    response = get(client, **{PAYMENT_SIGNATURE_HEADER: signature(required(get(client)), tx, **change)})

    assert response.status_code == 402
    assert named in required(response).error
    assert not CommunityPass.objects.exists()
    assert not LedgerTransaction.objects.filter(txid=tx.txid()).exists()


def test_a_v2_payment_paying_too_little_is_refused(client, client_key, coin):
    tx = pay(coin, client_key, PRICE - 1)
    response = get(client, **{PAYMENT_SIGNATURE_HEADER: signature(required(get(client)), tx)})
    assert response.status_code == 402 and not CommunityPass.objects.exists()


@pytest.mark.parametrize(
    "value",
    [
        "not base64!",
        base64.b64encode(b"[]").decode(),
        base64.b64encode(json.dumps({"x402Version": 1, "payload": {}}).encode()).decode(),
        base64.b64encode(json.dumps({"x402Version": 2, "payload": {"transaction": "00"}}).encode()).decode(),
    ],
    ids=["not-base64", "not-an-object", "version-1-shape", "no-accepted"],
)
def test_a_malformed_payment_signature_is_a_v2_402(client, db, value):
    response = get(client, **{PAYMENT_SIGNATURE_HEADER: value})
    assert response.status_code == 402
    assert response.json()["x402Version"] == 2 and PAYMENT_SIGNATURE_HEADER in required(response).error
    assert not CommunityPass.objects.exists()


def test_both_versions_at_once_are_refused(client, client_key, coin):
    tx = pay(coin, client_key, PRICE)
    response = get(
        client, **{"X-PAYMENT": v1_header(tx.hex()), PAYMENT_SIGNATURE_HEADER: signature(required(get(client)), tx)}
    )
    assert response.status_code == 402 and "not both" in required(response).error
    assert not CommunityPass.objects.exists()


def test_a_payment_signature_over_the_size_limit_is_431(client, db):
    response = get(client, **{PAYMENT_SIGNATURE_HEADER: "A" * (settings.API_MAX_PAYMENT_HEADER_BYTES + 4)})
    assert response.status_code == 431 and PAYMENT_SIGNATURE_HEADER in response.json()["error"]["message"]


def test_a_v1_payment_still_gets_x_payment_response(client, client_key, coin):
    tx = pay(coin, client_key, PRICE)
    response = get(client, **{"X-PAYMENT": v1_header(tx.hex())})
    assert response.status_code == 200 and "X-PAYMENT-RESPONSE" in response
    assert PAYMENT_RESPONSE_HEADER not in response
