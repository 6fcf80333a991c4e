"""GET /api/v1/community: HTTP 402 until a machine pays with a real transaction; a payment unlocks once."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from bsv import P2PKH, PrivateKey, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte
from django.conf import settings
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from meters.models import HourlyUsage, hash_token
from payments import keys, x402
from payments.models import CommunityPass, LedgerOutput, LedgerTransaction
from payments.networks import Outcome, Reply
from tests.payments.x402kit import NOW, PRICE, URL, Unreachable

pytestmark = [pytest.mark.time_machine(NOW, tick=False), pytest.mark.usefixtures("community_price")]


@pytest.fixture
def client_key() -> PrivateKey:
    return PrivateKey()


@pytest.fixture
def coin(client_key, faucet) -> Transaction:
    """A faucet transaction paying 50,000 sat to the client's key (output 0)."""
    return faucet(client_key.address(network=keys.address_network()), 50_000)


def pay(parent: Transaction, key: PrivateKey, satoshis: int, to: str | None = None) -> Transaction:
    """Sign, as an x402 client would with bsv-sdk, a payment of ``satoshis`` from ``parent``'s output 0."""
    tx = Transaction()
    tx.add_input(
        TransactionInput(
            source_transaction=parent, source_output_index=0, unlocking_script_template=P2PKH().unlock(key)
        )
    )
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(to or keys.utility_address()), satoshis=satoshis))
    tx.add_output(
        TransactionOutput(locking_script=P2PKH().lock(key.address(network=keys.address_network())), change=True)
    )
    tx.fee(SatoshisPerKilobyte(settings.FEE_SATS_PER_KB))
    tx.sign()
    return tx


def header(raw_hex: str, **overrides) -> str:
    body = {"x402Version": 1, "scheme": "exact", "network": "bsv:local", "payload": {"transaction": raw_hex}}
    body.update(overrides)
    return base64.b64encode(json.dumps(body).encode()).decode()


def get(client, value: str | None):
    return client.get(URL, headers={"X-PAYMENT": value} if value is not None else {})


def decoded(response) -> dict:
    return json.loads(base64.b64decode(response["X-PAYMENT-RESPONSE"]))


def assert_refused(response, reason: str) -> None:
    assert response.status_code == 402, response.content
    body = response.json()
    assert reason in body["error"]
    assert body["accepts"][0]["payTo"] == keys.utility_address()
    assert not CommunityPass.objects.exists()


def test_without_payment_the_answer_is_402_with_x402_requirements(client, db):
    response = get(client, None)
    assert response.status_code == 402
    body = response.json()
    assert body["x402Version"] == 1 and "X-PAYMENT" in body["error"]
    [accepts] = body["accepts"]
    assert accepts == {
        "scheme": "exact",
        "network": "bsv:local",
        "maxAmountRequired": str(PRICE),
        "asset": "BSV",
        "payTo": keys.utility_address(),
        "resource": "http://testserver/api/v1/community",
        "description": x402.DESCRIPTION,
        "mimeType": "application/json",
        "maxTimeoutSeconds": 60,
        "extra": accepts["extra"],
    }
    assert accepts["extra"]["accessDays"] == settings.COMMUNITY_ACCESS_DAYS


def test_a_real_payment_is_broadcast_and_answered_with_the_community_data(client, client_key, coin, make_meter):
    for _ in range(5):
        meter, _ = make_meter()
        HourlyUsage.objects.create(
            household=meter.household, meter=meter, hour_start=datetime(2026, 11, 20, 7, tzinfo=UTC), kwh=Decimal("2")
        )
    tx = pay(coin, client_key, PRICE)
    response = get(client, header(tx.hex()))

    assert response.status_code == 200, response.content
    settled = decoded(response)
    token = settled.pop("accessToken")
    assert settled == {
        "success": True,
        "transaction": tx.txid(),
        "network": "bsv:local",
        "payer": client_key.address(network=keys.address_network()),
    }
    data = response.json()
    assert data.pop("accessToken") == token and token.startswith("cpa_")
    assert [h["hour"] for h in data["hours"]] == list(range(24))
    assert data["hours"][8] == {"hour": 8, "shown": True, "households": 5, "kwh": "2.000000", "eur": None}
    assert data["hours"][9] == {"hour": 9, "shown": False, "households": None, "kwh": None, "eur": None}
    assert "household_id" not in response.content.decode()
    assert "no-store" in response["Cache-Control"]  # no shared cache hands the paid answer to others
    # The ledger has the payment; the pass is recorded as the machine's.
    paid = LedgerOutput.objects.get(transaction__txid=tx.txid(), address=keys.utility_address())
    assert paid.satoshis == PRICE
    community_pass = CommunityPass.objects.get()
    assert (community_pass.source, community_pass.household, community_pass.state) == ("x402", None, "seen")
    assert (community_pass.txid, community_pass.satoshis) == (tx.txid(), PRICE)
    assert community_pass.valid_until == NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS)
    assert community_pass.token_hash == hash_token(token)  # the token itself is stored nowhere


def test_a_payment_is_redeemed_once_and_not_charged_again(client, client_key, coin):
    # It used to answer the same 200 again: the transaction is public, so anybody could (issue 11).
    tx = pay(coin, client_key, PRICE)
    first = get(client, header(tx.hex()))
    second = get(client, header(tx.hex()))
    assert first.status_code == 200
    assert second.status_code == 402
    assert "payment already redeemed; present the access token it returned" in second.json()["error"]
    assert "accessToken" not in second.json()
    assert CommunityPass.objects.count() == 1
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 1


def test_a_payment_whose_access_ended_does_not_unlock_again(client, client_key, coin):
    tx = pay(coin, client_key, PRICE)
    assert get(client, header(tx.hex())).status_code == 200
    with time_machine.travel(NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS, seconds=1), tick=False):
        response = get(client, header(tx.hex()))
    assert response.status_code == 402
    assert "already bought access" in response.json()["error"]
    assert CommunityPass.objects.count() == 1


def test_paying_too_little_is_refused(client, client_key, coin):
    assert_refused(get(client, header(pay(coin, client_key, PRICE - 1).hex())), f"pays {PRICE - 1} sat")
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 0


def test_paying_another_address_is_refused(client, client_key, coin):
    elsewhere = PrivateKey().address(network=keys.address_network())
    assert_refused(get(client, header(pay(coin, client_key, PRICE, to=elsewhere).hex())), "pays nothing to")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"\xff\xfe").decode(), "not base64 of UTF-8"),
        (base64.b64encode(b"{not json").decode(), "does not decode to JSON"),
        (base64.b64encode(b"[1, 2]").decode(), "X-PAYMENT"),
        (base64.b64encode(b'{"x402Version": NaN}').decode(), "does not decode to JSON"),
    ],
)
def test_a_malformed_header_is_refused_with_a_reason(client, db, value, reason):
    assert_refused(get(client, value), reason)


def test_a_payload_that_is_not_hex_is_refused(client, db):
    assert_refused(get(client, header("zz" * 100)), "not hexadecimal")


def test_a_truncated_or_padded_transaction_is_refused(client, client_key, coin):
    raw = pay(coin, client_key, PRICE).hex()
    assert_refused(get(client, header(raw[:-10])), "does not decode to exactly one transaction")
    assert_refused(get(client, header(raw + "00")), "does not decode to exactly one transaction")
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 0


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"network": "bsv:mainnet"}, "network is 'bsv:mainnet'"),
        ({"scheme": "upto"}, "scheme"),
        ({"x402Version": 2}, "x402Version"),
        ({"extra": 1}, "extra"),
        ({"payload": {"transaction": "00", "signature": "x"}}, "payload.signature"),
    ],
)
def test_a_wrong_network_scheme_version_or_shape_is_refused(client, client_key, coin, overrides, reason):
    assert_refused(get(client, header(pay(coin, client_key, PRICE).hex(), **overrides)), reason)
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 0


def test_the_second_of_two_transactions_spending_one_coin_is_refused_as_a_double_spend(client, client_key, coin):
    first = pay(coin, client_key, PRICE)
    second = pay(coin, client_key, PRICE + 1)  # another transaction, the same coin
    assert get(client, header(first.hex())).status_code == 200
    response = get(client, header(second.hex()))
    assert response.status_code == 402
    assert "txn-mempool-conflict" in response.json()["error"]
    assert list(CommunityPass.objects.values_list("txid", flat=True)) == [first.txid()]


def test_a_transaction_already_on_the_network_is_refused(client, client_key, coin, ledger):
    # Every transaction on the chain is public: a household's hourly payment to the utility, say.
    tx = pay(coin, client_key, PRICE)
    assert ledger.broadcast(tx.hex()).outcome == Outcome.ACCEPTED
    assert_refused(get(client, header(tx.hex())), "already on the network")


def test_a_transaction_the_network_rejects_is_refused_and_may_be_offered_again_later(client, client_key, coin):
    orphan_parent = Transaction.from_hex(coin.hex())
    orphan_parent.inputs[0].unlocking_script = P2PKH().lock(keys.utility_address())  # another txid, unknown
    tx = pay(orphan_parent, client_key, PRICE)
    assert_refused(get(client, header(tx.hex())), "missing inputs")
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 0


def test_an_unreachable_network_is_a_503_and_the_same_payment_works_on_retry(
    client, client_key, coin, monkeypatch, ledger
):
    tx = pay(coin, client_key, PRICE)
    monkeypatch.setattr(x402, "get_network", Unreachable)
    response = get(client, header(tx.hex()))
    assert response.status_code == 503
    assert response["Retry-After"]
    assert CommunityPass.objects.get().state == "broadcast"  # claimed, not yet an open pass

    monkeypatch.setattr(x402, "get_network", lambda: ledger)
    retry = get(client, header(tx.hex()))
    assert retry.status_code == 200  # nobody redeemed it yet: the retry is the redemption
    community_pass = CommunityPass.objects.get()
    assert community_pass.state == "seen"
    assert community_pass.token_hash == hash_token(retry.json()["accessToken"])
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 1


def test_a_claim_whose_answer_was_lost_is_finished_by_the_refresher(client, client_key, coin, monkeypatch, ledger):
    from payments.broadcast import refresh_pending

    tx = pay(coin, client_key, PRICE)
    monkeypatch.setattr(x402, "get_network", Unreachable)
    assert get(client, header(tx.hex())).status_code == 503
    refresh_pending(CommunityPass, ledger)  # not on the ledger: sends it
    assert CommunityPass.objects.get().state == "seen"


def test_a_network_that_cannot_say_whether_it_knows_the_transaction_is_a_503(client, client_key, coin, monkeypatch):
    class Silent(Unreachable):
        def status(self, txid):
            return Reply(Outcome.RETRY, "ARC HTTP 503")

    monkeypatch.setattr(x402, "get_network", Silent)
    response = get(client, header(pay(coin, client_key, PRICE).hex()))
    assert response.status_code == 503
    assert not CommunityPass.objects.exists()


def test_only_get_and_head(client, db):
    assert client.post(URL).status_code == 405


b64 = st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {
        "x402Version": st.sampled_from([1, 2, "1", 1.0, True, None]),
        "scheme": st.sampled_from(["exact", "upto", ""]),
        "network": st.sampled_from(["bsv:local", "bsv:mainnet", "base"]),
        "payload": st.fixed_dictionaries({"transaction": st.binary(max_size=300).map(bytes.hex) | st.text(max_size=40)})
        | json_values,
    }
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.text(max_size=300)
    | b64
    | json_values.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode())
    | shaped.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode())
)
def test_no_header_content_causes_a_500_or_a_row(client, db, value):
    response = get(client, value)
    assert response.status_code == 402
    assert "error" in response.json()
    assert not CommunityPass.objects.exists()
    assert not LedgerTransaction.objects.exists()


def test_other_methods_get_a_json_405_naming_the_allowed_ones(client, db):
    response = client.post(URL, {}, content_type="application/json")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert response.json() == {"error": {"code": "method_not_allowed", "message": "use GET"}}
