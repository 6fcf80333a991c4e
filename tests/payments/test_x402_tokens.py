"""GET /api/v1/community after paying: the payment is redeemed once, for an access token bound to the pass.

The transaction is public once broadcast, so presenting it proves nothing about who asks: the first
redemption returns a token (only its hash is kept), the client sends it as a bearer token until the
pass ends, and the same payment from anyone else is refused and charged nothing. The payer whose
answer was lost proves its key (X-PAYMENT-PROOF) for a new token; the old one stops working.
"""

from __future__ import annotations

import base64
import json
import logging
from datetime import datetime, timedelta

import pytest
import time_machine
from bsv import PrivateKey, Transaction
from django.conf import settings
from django.db import DatabaseError, connection
from django.test import Client
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from meters.models import hash_token
from payments import keys, passes, x402
from payments.broadcast import refresh_pending
from payments.models import CommunityPass, LedgerTransaction
from tests.energypay.test_openapi import assert_conforms, pay, payment_header
from tests.meters.test_ingest_fuzz import FUZZ
from tests.payments.x402kit import NOW, PRICE, URL, Unreachable
from tests.threads import at_once

DAYS = timedelta(days=1)
REDEEMED = "payment already redeemed; present the access token it returned"


pytestmark = [pytest.mark.time_machine(NOW, tick=False), pytest.mark.usefixtures("community_price")]


@pytest.fixture
def payer_key() -> PrivateKey:
    return PrivateKey()


@pytest.fixture
def payment(faucet, payer_key) -> Transaction:
    """A signed transaction paying PRICE to the utility from the payer's fresh faucet coin: valid, not yet sent."""
    coin = faucet(payer_key.address(network=keys.address_network()), 50_000)
    return pay(coin, payer_key, PRICE)


def ask(client: Client, *, payment: Transaction | None = None, token: str | None = None, proof: str | None = None):
    headers = {}
    if payment is not None:
        headers["X-PAYMENT"] = payment_header(payment.hex())
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if proof is not None:
        headers["X-PAYMENT-PROOF"] = proof
    return client.get(URL, headers=headers)


def redeem(client: Client, payment: Transaction) -> str:
    response = ask(client, payment=payment)
    assert response.status_code == 200, response.content
    body = assert_conforms(response, URL, "get")
    return body["accessToken"]


def proof(key: PrivateKey, txid: str, signed_at: datetime = NOW) -> str:
    """X-PAYMENT-PROOF as a client signs it with bsv-sdk (Bitcoin Signed Message)."""
    when = f"{signed_at:%Y-%m-%dT%H:%M:%SZ}"
    _, signature = key.sign_text(f"EnergyPay community access {txid} {when}")
    return base64.b64encode(json.dumps({"signedAt": when, "signature": signature}).encode()).decode()


def charges() -> int:
    return LedgerTransaction.objects.filter(is_faucet=False).count()


def assert_payment_required(response, reason: str) -> dict:
    assert response.status_code == 402, response.content
    body = assert_conforms(response, URL, "get")
    assert reason in body["error"]
    assert body["accepts"][0]["payTo"] == keys.utility_address()  # the requirements again: pay to get in
    assert "accessToken" not in body and "X-PAYMENT-RESPONSE" not in response
    return body


# --- the payer keeps access with its token -------------------------------------------------------------


def test_the_payer_keeps_access_with_its_token_until_the_pass_ends_and_not_after(client, payment):
    token = redeem(client, payment)
    community_pass = CommunityPass.objects.get()
    assert community_pass.token_hash == hash_token(token)
    end = community_pass.valid_until
    assert end == NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS)

    with time_machine.travel(end - timedelta(seconds=1), tick=False):
        later = ask(Client(), token=token)  # another connection, another process: only the token matters
    assert later.status_code == 200
    body = assert_conforms(later, URL, "get")
    assert body["accessUntil"] == f"{end:%Y-%m-%dT%H:%M:%SZ}"
    assert "accessToken" not in body and "X-PAYMENT-RESPONSE" not in later  # nothing was paid or issued
    with time_machine.travel(end, tick=False):
        assert_payment_required(ask(Client(), token=token), "the access token's pass ended at")
    assert charges() == 1


def test_head_redeems_too_and_the_token_comes_in_the_payment_response_header(client, payment):
    response = client.head(URL, headers={"X-PAYMENT": payment_header(payment.hex())})
    assert response.status_code == 200 and response.content == b""
    assert_conforms(response, URL, "head")
    token = json.loads(base64.b64decode(response["X-PAYMENT-RESPONSE"]))["accessToken"]
    assert ask(client, token=token).status_code == 200


def test_a_live_token_answers_without_touching_a_payment_sent_with_it(client, faucet, payment, payer_key):
    token = redeem(client, payment)
    another = pay(faucet(payer_key.address(network=keys.address_network()), 50_000), payer_key, PRICE)
    response = ask(client, payment=another, token=token)
    assert response.status_code == 200
    assert "accessToken" not in response.json()
    assert charges() == 1  # the second payment was neither broadcast nor claimed
    assert list(CommunityPass.objects.values_list("txid", flat=True)) == [payment.txid()]


# --- a replay from another client ----------------------------------------------------------------------


def test_a_replay_from_a_second_client_is_refused_with_the_reason_and_charges_nothing(client, payment):
    token = redeem(client, payment)
    for at in (NOW, NOW + DAYS):  # right away, and a day later while the pass is live
        with time_machine.travel(at, tick=False):
            body = assert_payment_required(ask(Client(), payment=payment), REDEEMED)
    assert "Authorization: Bearer" in body["error"] and "X-PAYMENT-PROOF" in body["error"]
    community_pass = CommunityPass.objects.get()
    assert community_pass.token_hash == hash_token(token)  # the payer's token still stands
    assert charges() == 1
    assert ask(client, token=token).status_code == 200


def test_a_payment_the_refresher_finished_goes_to_the_first_who_presents_it(client, payment, ledger, monkeypatch):
    monkeypatch.setattr(x402, "get_network", Unreachable)
    assert ask(client, payment=payment).status_code == 503
    refresh_pending(CommunityPass, ledger)  # the network has it now; nobody holds a token yet
    assert CommunityPass.objects.get().state == "seen"
    monkeypatch.setattr(x402, "get_network", lambda: ledger)
    token = redeem(client, payment)  # the payer's retry
    assert_payment_required(ask(Client(), payment=payment), REDEEMED)
    assert ask(client, token=token).status_code == 200
    assert charges() == 1


# --- tokens that open nothing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("Bearer cpa_" + "A" * 43, "the access token is not valid"),
        ("Bearer mtr_" + "A" * 43, "the access token is not valid"),  # a meter's token opens nothing here
        ("Bearer " + "x" * 500, "the access token is not valid"),
        ("Basic dXNlcjpwYXNz", "Authorization must be 'Bearer <access token>'"),
        ("Bearer", "Authorization must be 'Bearer <access token>'"),
        ("", "Authorization must be 'Bearer <access token>'"),
    ],
)
def test_a_wrong_token_gets_402_with_the_requirements(client, payment, authorization, reason):
    token = redeem(client, payment)
    assert_payment_required(client.get(URL, headers={"Authorization": authorization}), reason)
    assert_payment_required(client.get(URL, headers={"Authorization": token[:-1]}), "Authorization must be")
    assert_payment_required(ask(client, token=token[:-1]), "the access token is not valid")
    assert_payment_required(ask(client, token=payment.txid()), "the access token is not valid")


def test_a_wrong_token_with_a_new_payment_pays_as_without_a_token(client, payment):
    response = ask(client, payment=payment, token="cpa_" + "A" * 43)
    assert response.status_code == 200
    assert CommunityPass.objects.get().token_hash == hash_token(response.json()["accessToken"])


def test_a_households_pass_has_no_token_and_its_txid_opens_nothing(client, payment, household):
    wallet_pass = CommunityPass.objects.create(
        household=household,
        source=CommunityPass.Source.WALLET,
        txid="ab" * 32,
        raw_tx="00",
        satoshis=PRICE,
        state=CommunityPass.State.SEEN,
        valid_until=NOW + DAYS,
    )
    assert_payment_required(ask(client, token=wallet_pass.txid), "the access token is not valid")
    wallet_pass.token_hash = hash_token("cpa_" + "B" * 43)
    with pytest.raises(DatabaseError):  # IntegrityError: only a machine's pass carries a bearer token
        wallet_pass.save()


# --- the payer whose answer was lost ------------------------------------------------------------------


def test_a_lost_answer_is_recovered_by_the_payers_signature_which_replaces_the_token(client, payment, payer_key):
    lost = redeem(client, payment)  # the 200 never reached the client
    with time_machine.travel(NOW + DAYS, tick=False):
        response = ask(Client(), payment=payment, proof=proof(payer_key, payment.txid(), NOW + DAYS))
    assert response.status_code == 200, response.content
    token = assert_conforms(response, URL, "get")["accessToken"]
    assert token != lost
    community_pass = CommunityPass.objects.get()
    assert community_pass.token_hash == hash_token(token)
    assert community_pass.proof_signed_at == NOW + DAYS
    assert community_pass.valid_until == NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS)  # not extended
    assert ask(client, token=token).status_code == 200
    assert_payment_required(ask(client, token=lost), "the access token is not valid")
    assert charges() == 1


def test_a_proof_works_once_and_a_later_one_works_again(client, payment, payer_key):
    redeem(client, payment)
    signed = proof(payer_key, payment.txid(), NOW - timedelta(minutes=1))
    assert ask(client, payment=payment, proof=signed).status_code == 200
    assert_payment_required(ask(Client(), payment=payment, proof=signed), "X-PAYMENT-PROOF was already used")
    assert ask(client, payment=payment, proof=proof(payer_key, payment.txid())).status_code == 200


@pytest.mark.parametrize(
    ("make_proof", "reason"),
    [
        (lambda key, txid: proof(PrivateKey(), txid), "X-PAYMENT-PROOF signature is not the payer's"),
        (lambda key, txid: proof(key, "00" * 32), "X-PAYMENT-PROOF signature is not the payer's"),
        (lambda key, txid: proof(key, txid, NOW - timedelta(minutes=6)), "within 5 minutes"),
        (lambda key, txid: proof(key, txid, NOW + timedelta(minutes=6)), "within 5 minutes"),
        (lambda key, txid: base64.b64encode(b'{"signedAt": "2026-11-22T14:07:00Z"}').decode(), "signature"),
        (
            lambda key, txid: base64.b64encode(b'{"signedAt": "2026-13-22T14:07:00Z", "signature": "x"}').decode(),
            "not a UTC time",
        ),
        (lambda key, txid: "not base64!", "X-PAYMENT-PROOF is not base64"),
    ],
)
def test_a_proof_that_is_not_the_payers_fresh_signature_is_refused(client, payment, payer_key, make_proof, reason):
    token = redeem(client, payment)
    assert_payment_required(ask(Client(), payment=payment, proof=make_proof(payer_key, payment.txid())), reason)
    assert CommunityPass.objects.get().token_hash == hash_token(token)
    assert charges() == 1


def test_a_bad_proof_with_a_fresh_payment_is_refused_before_anything_is_charged(client, payment):
    assert_payment_required(ask(client, payment=payment, proof=proof(PrivateKey(), payment.txid())), "not the payer's")
    assert not CommunityPass.objects.exists()
    assert charges() == 0
    assert redeem(client, payment)  # the payment itself is still good


def test_a_payment_whose_first_input_is_not_p2pkh_cannot_be_proven():
    payment = passes.Payment(txid="ab" * 32, raw_tx="00", paid=PRICE, payer="")
    with pytest.raises(passes.PaymentRefused, match="not a P2PKH spend"):
        passes.check_proof(payment, passes.Proof(signed_at=NOW, signature="x"), NOW)


def test_no_token_is_issued_when_the_answer_cannot_be_built_and_the_retry_gets_it(client, payment, monkeypatch):
    def database_gone(now):
        raise DatabaseError("server closed the connection unexpectedly")

    with monkeypatch.context() as patch:
        patch.setattr(x402.stats, "community_day", database_gone)
        assert ask(client, payment=payment).status_code == 503
    community_pass = CommunityPass.objects.get()
    assert (community_pass.state, community_pass.token_hash) == ("seen", None)  # paid, not yet redeemed
    assert CommunityPass.objects.get().token_hash is None
    token = redeem(client, payment)
    assert CommunityPass.objects.get().token_hash == hash_token(token)
    assert charges() == 1


# --- generated headers around a redeemed payment -------------------------------------------------------

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


@hypothesis_settings(FUZZ, max_examples=100)
@given(
    authorization=st.none() | printable | printable.map(lambda t: "Bearer " + t) | printable.map(lambda t: "cpa_" + t),
    proof_value=st.none()
    | printable
    | st.fixed_dictionaries(
        {"signedAt": st.sampled_from(["2026-11-22T14:07:00Z", "2026-02-30T00:00:00Z", ""]) | printable},
        optional={"signature": printable, "extra": printable},
    ).map(lambda d: base64.b64encode(json.dumps(d).encode()).decode()),
)
def test_no_authorization_or_proof_header_gets_a_second_token_or_a_500(redeemed, authorization, proof_value):
    client, payment, token_hash = redeemed
    headers = {"X-PAYMENT": payment_header(payment.hex())}
    if authorization is not None:
        headers["Authorization"] = authorization
    if proof_value is not None:
        headers["X-PAYMENT-PROOF"] = proof_value
    response = client.get(URL, headers=headers)
    assert response.status_code == 402, response.content
    assert_conforms(response, URL, "get")
    assert CommunityPass.objects.get().token_hash == token_hash
    assert charges() == 1


@pytest.fixture
def redeemed(client, payment) -> tuple[Client, Transaction, str]:
    redeem(client, payment)
    return client, payment, CommunityPass.objects.get().token_hash


# --- two redemptions of one payment at the same moment, on PostgreSQL ---------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what is under test; SQLite serializes")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("first_answer", ["none yet", "lost in a 503"])
def test_simultaneous_redemptions_of_one_payment_issue_exactly_one_token(payment, ledger, monkeypatch, first_answer):
    if first_answer == "lost in a 503":
        # Claimed and broadcast, no answer: every retry sends it again and the network accepts each one.
        monkeypatch.setattr(x402, "get_network", Unreachable)
        assert ask(Client(), payment=payment).status_code == 503
        assert CommunityPass.objects.get().state == "broadcast"
    monkeypatch.setattr(x402, "get_network", lambda: ledger)

    def present():
        return ask(Client(), payment=payment)

    answers, errors = at_once(*[present] * 4)
    assert errors == []
    ok = [answer for answer in answers if answer.status_code == 200]
    assert len(ok) == 1, [(a.status_code, a.content[:200]) for a in answers]
    for answer in answers:
        if answer.status_code != 200:  # refused as redeemed, or asked to retry while the other one checks
            assert answer.status_code in (402, 503), answer.content
            assert "accessToken" not in answer.json()
    token = ok[0].json()["accessToken"]
    assert CommunityPass.objects.get().token_hash == hash_token(token)
    assert charges() == 1
    assert ask(Client(), token=token).status_code == 200


# --- the token stays secret ----------------------------------------------------------------------------


def test_a_database_outage_while_checking_a_token_is_a_503_not_a_500(client, payment, monkeypatch):
    token = redeem(client, payment)

    def database_gone(token):
        raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(CommunityPass, "for_token", database_gone)
    response = ask(client, token=token)
    assert response.status_code == 503 and response["Retry-After"]
    assert_conforms(response, URL, "get")


def test_the_log_filter_redacts_access_tokens_wherever_they_appear():
    from energypay.logging import RedactSecrets

    token = "cpa_" + "Zk3q9X-abcDEF_0123456789abcdefghijklmnopq"
    for line in (f"token={token}", f"headers={{'Authorization': 'Bearer {token}'}}", f"Bearer {token}"):
        record = logging.makeLogRecord({"msg": "x402 %s", "args": (line,)})
        RedactSecrets().filter(record)
        assert token not in record.getMessage() and token[4:] not in record.getMessage()
        assert "[REDACTED]" in record.getMessage()
