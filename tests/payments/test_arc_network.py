"""ARC + WhatsOnChain (BSV_NETWORK=testnet|mainnet), against recorded-style answers.

The bodies below follow the shapes ARC (bitcoin-sv/arc doc/api.md: TransactionResponse and RFC 7807
errors) and WhatsOnChain (docs.taal.com, "Get Unspent UTXOs by Address", "Chain Info") send.
"""

from __future__ import annotations

import json
import logging
import secrets

import pytest
import requests
import responses
from bsv import P2PKH, Script, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte

from payments import keys
from payments.networks import Outcome
from payments.networks.arc import MAX_BACKOFF, WOC_ATTEMPTS, ArcWhatsOnChain, NetworkUnavailable

ARC_URL = "https://arc-test.taal.com"
WOC = "https://api.whatsonchain.com/v1/bsv/test"
ARC_KEY = "testnet_arc-SECRET-4f1d9c"
WOC_KEY = "testnet_woc-SECRET-8a2e71"
TIP = 1_650_010


# --- Transactions: real ones, signed with bsv-sdk ---


def fake_parent(address: str, amounts: list[int]) -> Transaction:
    """A transaction paying ``address``; its own input is made up (nothing here checks it)."""
    return Transaction(
        [TransactionInput(source_txid=secrets.token_hex(32), source_output_index=0, unlocking_script=Script(b"\x51"))],
        [TransactionOutput(P2PKH().lock(address), amount) for amount in amounts],
    )


@pytest.fixture
def signed_tx() -> Transaction:
    parent = fake_parent(keys.household_address(1), [10_000])
    tx = Transaction(
        [
            TransactionInput(
                source_transaction=parent,
                source_output_index=0,
                unlocking_script_template=P2PKH().unlock(keys.household_key(1)),
            )
        ],
        [
            TransactionOutput(P2PKH().lock(keys.household_address(2)), 4_000),
            TransactionOutput(P2PKH().lock(keys.household_address(1)), change=True),
        ],
    )
    tx.fee(SatoshisPerKilobyte(100))
    tx.sign()
    return tx


# --- Recorded-style bodies ---


def arc_tx(txid: str, tx_status: str, **fields: object) -> dict:
    """ARC's TransactionResponse (POST /v1/tx) and TransactionStatus (GET /v1/tx/{txid})."""
    return {
        "blockHash": "",
        "blockHeight": 0,
        "competingTxs": None,
        "extraInfo": "",
        "merklePath": "",
        "status": 200,
        "timestamp": "2026-11-22T10:05:02.183Z",
        "title": "OK",
        "txStatus": tx_status,
        "txid": txid,
        **fields,
    }


def arc_error(status: int, title: str, detail: str, txid: str = "", extra: str = "") -> dict:
    return {
        "type": f"https://bitcoin-sv.github.io/arc/#/errors?id=_{status}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": None,
        "txid": txid,
        "extraInfo": extra,
    }


def chain_info(blocks: int = TIP) -> dict:
    return {
        "chain": "test",
        "blocks": blocks,
        "headers": blocks,
        "bestblockhash": "000000000000044b3d9a2f5f5e2b5d3f0c1c7a1e2c4b6d8f0a1b2c3d4e5f6a7b",
        "difficulty": 1.0,
        "mediantime": 1795867800,
        "verificationprogress": 1.0,
        "pruned": False,
        "chainwork": "0000000000000000000000000000000000000000000000000000000000000000",
    }


def unspent_entry(txid: str, vout: int, value: int, height: int | None, *, spent_in_mempool: bool = False) -> dict:
    entry = {
        "tx_pos": vout,
        "tx_hash": txid,
        "value": value,
        "isSpentInMempoolTx": spent_in_mempool,
        "status": "confirmed" if height else "unconfirmed",
    }
    if height:
        entry["height"] = height
    return entry


def unspent_list(address: str, entries: list[dict]) -> dict:
    return {"address": address, "script": "ab" * 32, "result": entries, "error": ""}


# --- Fixtures ---


@pytest.fixture
def http():
    with responses.RequestsMock() as mock:
        yield mock


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def network(waits) -> ArcWhatsOnChain:
    return ArcWhatsOnChain(arc_url=ARC_URL, arc_api_key="", woc_api_key="", mainnet=False, sleep=waits.append)


@pytest.fixture
def keyed_network(waits) -> ArcWhatsOnChain:
    return ArcWhatsOnChain(arc_url=ARC_URL, arc_api_key=ARC_KEY, woc_api_key=WOC_KEY, mainnet=False, sleep=waits.append)


def post_tx(http, status: int = 200, **kwargs) -> None:
    http.add(responses.POST, f"{ARC_URL}/v1/tx", status=status, **kwargs)


# --- broadcast ---


def test_seen_on_network_is_accepted_and_the_plain_raw_hex_is_sent_as_json(http, network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "SEEN_ON_NETWORK"))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.ACCEPTED
    assert "SEEN_ON_NETWORK" in reply.detail
    request = http.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"rawTx": signed_tx.hex()}


@pytest.mark.parametrize("tx_status", ["STORED", "ANNOUNCED_TO_NETWORK", "SENT_TO_NETWORK", "ACCEPTED_BY_NETWORK"])
def test_progressing_statuses_are_accepted(http, network, signed_tx, tx_status):
    post_tx(http, json=arc_tx(signed_tx.txid(), tx_status))

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.ACCEPTED


def test_mined_is_confirmed_with_confirmations_from_the_chain_height(http, network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "MINED", blockHeight=TIP - 2, blockHash="00" * 32))
    http.add(responses.GET, f"{WOC}/chain/info", json=chain_info(TIP))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.CONFIRMED
    assert reply.confirmations == 3
    assert f"in block {TIP - 2}" in reply.detail


def test_double_spend_attempted_arriving_as_http_200_waits_until_one_side_is_mined(http, network, signed_tx):
    rival = "c0d6fce714e4225614f000c6a5addaaa1341acbb9c87115114dcf84f37b945a6"
    post_tx(http, json=arc_tx(signed_tx.txid(), "DOUBLE_SPEND_ATTEMPTED", competingTxs=[rival]))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.RETRY
    assert rival in reply.detail


def test_fee_too_low_465_is_rejected_with_the_reason(http, network, signed_tx):
    body = arc_error(
        465, "Fee too low", "The fees are too low", signed_tx.txid(), "minimum expected fee is 23, actual fee is 1"
    )
    post_tx(http, status=465, json=body)

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.REJECTED
    assert "465" in reply.detail
    assert "Fee too low" in reply.detail
    assert "minimum expected fee is 23" in reply.detail


def test_bad_unlocking_scripts_461_are_rejected(http, network, signed_tx):
    body = arc_error(
        461,
        "Malformed transaction",
        "Transaction is malformed and cannot be processed",
        signed_tx.txid(),
        "script(Unlocking): script returned false",
    )
    post_tx(http, status=461, json=body)

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.REJECTED
    assert "461" in reply.detail


def test_parents_arc_cannot_find_460_are_rejected_like_missing_inputs(http, network, signed_tx):
    body = arc_error(460, "Not extended format", "Missing input scripts: Transaction could not be transformed")
    post_tx(http, status=460, json=body)

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.REJECTED


def test_conflict_466_is_a_double_spend(http, network, signed_tx):
    body = arc_error(466, "Conflicting tx found", "Transaction is valid, but there is a conflicting tx")
    post_tx(http, status=466, json=body)

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.DOUBLE_SPEND


def test_rejected_status_is_rejected(http, network, signed_tx):
    extra = "arc error 273: transaction rejected by network: mandatory-script-verify-flag-failed"
    post_tx(http, json=arc_tx(signed_tx.txid(), "REJECTED", extraInfo=extra))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.REJECTED
    assert "mandatory-script-verify-flag-failed" in reply.detail


def test_rejected_for_a_mempool_conflict_is_a_double_spend(http, network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "REJECTED", extraInfo="txn-mempool-conflict"))

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.DOUBLE_SPEND


def test_orphan_mempool_is_retried_later(http, network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "SEEN_IN_ORPHAN_MEMPOOL"))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.RETRY
    assert "parent" in reply.detail


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried(http, network, signed_tx, status):
    post_tx(http, status=status, json={"status": status, "title": "Internal Server Error", "detail": "try later"})

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.RETRY


def test_an_html_error_page_is_retried(http, network, signed_tx):
    post_tx(http, status=502, body="<html><body>502 Bad Gateway</body></html>", content_type="text/html")

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.RETRY


def test_timeout_is_retried(http, network, signed_tx):
    post_tx(http, body=requests.exceptions.ReadTimeout("read timed out"))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.RETRY
    assert "ReadTimeout" in reply.detail


def test_connection_error_is_retried(http, network, signed_tx):
    post_tx(http, body=requests.exceptions.ConnectionError("connection refused"))

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.RETRY
    assert "ConnectionError" in reply.detail


def test_rate_limit_is_retried_with_the_wait_arc_asks_for(http, network, signed_tx):
    post_tx(http, status=429, json={"status": 429, "title": "Too many requests"}, headers={"Retry-After": "30"})

    reply = network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.RETRY
    assert "retry after 30 s" in reply.detail


def test_an_unknown_status_is_retried(http, network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "SOMETHING_NEW"))

    assert network.broadcast(signed_tx.hex()).outcome == Outcome.RETRY


def test_malformed_hex_is_rejected_without_asking_arc(http, network, signed_tx):
    for bad in ("not hex", signed_tx.hex()[:-2], signed_tx.hex() + "00"):
        assert network.broadcast(bad).outcome == Outcome.REJECTED
    assert len(http.calls) == 0


def test_the_arc_key_is_sent_as_a_bearer_token(http, keyed_network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "SEEN_ON_NETWORK"))

    keyed_network.broadcast(signed_tx.hex())

    assert http.calls[0].request.headers["Authorization"] == f"Bearer {ARC_KEY}"


def test_no_authorization_header_without_an_arc_key(http, network, signed_tx):
    post_tx(http, json=arc_tx(signed_tx.txid(), "SEEN_ON_NETWORK"))

    network.broadcast(signed_tx.hex())

    assert "Authorization" not in http.calls[0].request.headers


def test_a_refused_key_is_retried_not_rejected(http, keyed_network, signed_tx):
    # A configuration mistake must not fail (and re-sign) every settlement: they wait for the fix.
    post_tx(http, status=401, json={"status": 401, "title": "Unauthorized", "detail": "invalid API key"})

    reply = keyed_network.broadcast(signed_tx.hex())

    assert reply.outcome == Outcome.RETRY
    assert "ARC_API_KEY" in reply.detail


# --- status ---


def test_status_of_a_mined_transaction_counts_confirmations(http, network, signed_tx):
    txid = signed_tx.txid()
    http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", json=arc_tx(txid, "MINED", blockHeight=TIP - 5))
    http.add(responses.GET, f"{WOC}/chain/info", json=chain_info(TIP))

    reply = network.status(txid)

    assert reply.outcome == Outcome.CONFIRMED
    assert reply.confirmations == 6


def test_the_chain_height_is_asked_once_for_many_statuses(http, network):
    txids = [secrets.token_hex(32) for _ in range(3)]
    for txid in txids:
        http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", json=arc_tx(txid, "MINED", blockHeight=TIP))
    info = http.add(responses.GET, f"{WOC}/chain/info", json=chain_info(TIP))

    assert [network.status(txid).confirmations for txid in txids] == [1, 1, 1]
    assert info.call_count == 1


def test_mined_stays_confirmed_when_whatsonchain_is_down(http, network, waits):
    txid = secrets.token_hex(32)
    http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", json=arc_tx(txid, "MINED", blockHeight=TIP))
    http.add(responses.GET, f"{WOC}/chain/info", status=503)

    reply = network.status(txid)

    assert (reply.outcome, reply.confirmations) == (Outcome.CONFIRMED, 1)
    assert len(waits) == WOC_ATTEMPTS - 1


def test_status_unknown_to_arc_is_unknown(http, network):
    txid = secrets.token_hex(32)
    body = arc_error(404, "Not found", "The requested resource could not be found", txid)
    http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", status=404, json=body)

    assert network.status(txid).outcome == Outcome.UNKNOWN


def test_status_seen_on_network_is_accepted(http, network):
    txid = secrets.token_hex(32)
    http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", json=arc_tx(txid, "SEEN_ON_NETWORK"))

    assert network.status(txid).outcome == Outcome.ACCEPTED


def test_status_double_spend_attempted_is_undecided_until_mined(http, network):
    txid = secrets.token_hex(32)
    body = arc_tx(txid, "DOUBLE_SPEND_ATTEMPTED", competingTxs=[secrets.token_hex(32)])
    http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", json=body)

    assert network.status(txid).outcome == Outcome.RETRY


@pytest.mark.parametrize(
    "answer",
    [
        {"body": requests.exceptions.ReadTimeout("read timed out")},
        {"body": requests.exceptions.ConnectionError("connection refused")},
        {"status": 500, "json": {"status": 500, "title": "Internal Server Error"}},
        {"status": 429, "json": {"status": 429, "title": "Too many requests"}},
    ],
)
def test_status_network_trouble_is_retried(http, network, answer):
    txid = secrets.token_hex(32)
    http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", **answer)

    assert network.status(txid).outcome == Outcome.RETRY


def test_status_refuses_something_that_is_not_a_txid(network):
    with pytest.raises(ValueError):
        network.status("../policy")


# --- coins ---


@pytest.fixture
def address() -> str:
    return keys.household_address(1)


def test_coins_skip_spent_in_mempool_and_fetch_each_parent_once(http, network, address):
    both = fake_parent(address, [5_000, 7_000])  # two coins, one parent
    spent = fake_parent(address, [9_000])
    fresh = fake_parent(address, [3_000])
    entries = [
        unspent_entry(both.txid(), 0, 5_000, TIP - 9),
        unspent_entry(both.txid(), 1, 7_000, TIP - 9),
        unspent_entry(spent.txid(), 0, 9_000, TIP - 1, spent_in_mempool=True),
        unspent_entry(fresh.txid(), 0, 3_000, None),
    ]
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json=unspent_list(address, entries))
    parent_calls = [
        http.add(responses.GET, f"{WOC}/tx/{parent.txid()}/hex", body=parent.hex()) for parent in (both, fresh)
    ]
    http.add(responses.GET, f"{WOC}/chain/info", json=chain_info(TIP))

    coins = network.coins(address)

    assert [(c.txid, c.vout, c.satoshis, c.confirmations) for c in coins] == [
        (both.txid(), 0, 5_000, 10),
        (both.txid(), 1, 7_000, 10),
        (fresh.txid(), 0, 3_000, 0),
    ]
    assert coins[0].raw_parent == both.hex()
    assert Transaction.from_hex(coins[2].raw_parent).txid() == fresh.txid()
    assert [call.call_count for call in parent_calls] == [1, 1]
    assert not any(spent.txid() in call.request.url for call in http.calls)


def test_coins_of_an_empty_wallet_need_one_request(http, network, address):
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json=unspent_list(address, []))

    assert network.coins(address) == []
    assert len(http.calls) == 1


def test_rate_limit_is_waited_out_as_retry_after_asks(http, network, waits, address):
    url = f"{WOC}/address/{address}/unspent/all"
    http.add(responses.GET, url, status=429, body="Too Many Requests", headers={"Retry-After": "2"})
    http.add(responses.GET, url, json=unspent_list(address, []))

    assert network.coins(address) == []
    assert waits == [2.0]


def test_rate_limit_without_retry_after_backs_off_exponentially(http, network, waits, address):
    url = f"{WOC}/address/{address}/unspent/all"
    for _ in range(2):
        http.add(responses.GET, url, status=429, body="Too Many Requests")
    http.add(responses.GET, url, json=unspent_list(address, []))

    network.coins(address)

    assert waits == [1.0, 2.0]


def test_repeated_rate_limits_give_up_with_network_unavailable(http, network, waits, address):
    http.add(
        responses.GET,
        f"{WOC}/address/{address}/unspent/all",
        status=429,
        body="Too Many Requests",
        headers={"Retry-After": "3600"},
    )

    with pytest.raises(NetworkUnavailable, match="429"):
        network.coins(address)
    assert len(http.calls) == WOC_ATTEMPTS
    assert waits == [MAX_BACKOFF] * (WOC_ATTEMPTS - 1)  # a huge Retry-After is capped


def test_whatsonchain_timeouts_give_up_with_network_unavailable(http, network, waits, address):
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", body=requests.exceptions.ReadTimeout())

    with pytest.raises(NetworkUnavailable, match="ReadTimeout"):
        network.coins(address)
    assert len(waits) == WOC_ATTEMPTS - 1


def test_a_parent_that_is_not_the_listed_transaction_is_refused(http, network, address):
    listed, impostor = fake_parent(address, [5_000]), fake_parent(address, [5_000_000])
    entries = [unspent_entry(listed.txid(), 0, 5_000, None)]
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json=unspent_list(address, entries))
    http.add(responses.GET, f"{WOC}/tx/{listed.txid()}/hex", body=impostor.hex())

    with pytest.raises(NetworkUnavailable, match="is not that transaction"):
        network.coins(address)


def test_an_output_that_does_not_pay_the_address_is_skipped(http, network, address):
    other = fake_parent(keys.household_address(2), [5_000])
    entries = [unspent_entry(other.txid(), 0, 5_000, None)]
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json=unspent_list(address, entries))
    http.add(responses.GET, f"{WOC}/tx/{other.txid()}/hex", body=other.hex())

    assert network.coins(address) == []


def test_coins_refuse_an_address_of_the_other_network(network):
    mainnet_address = "1L2F8wYxTRagCZLnsm2engg8ngGECSeuE5"

    with pytest.raises(ValueError, match="testnet"):
        network.coins(mainnet_address)


def test_the_whatsonchain_key_is_sent_in_both_headers(http, keyed_network, address):
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json=unspent_list(address, []))

    keyed_network.coins(address)

    headers = http.calls[0].request.headers
    assert headers["Authorization"] == WOC_KEY
    assert headers["woc-api-key"] == WOC_KEY


def test_no_whatsonchain_key_headers_without_a_key(http, network, address):
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json=unspent_list(address, []))

    network.coins(address)

    headers = http.calls[0].request.headers
    assert "Authorization" not in headers
    assert "woc-api-key" not in headers


def test_mainnet_reads_the_main_chain(http):
    main = ArcWhatsOnChain(arc_url="https://arc.gorillapool.io/", arc_api_key=None, woc_api_key=None, mainnet=True)
    mainnet_address = "1L2F8wYxTRagCZLnsm2engg8ngGECSeuE5"
    url = f"https://api.whatsonchain.com/v1/bsv/main/address/{mainnet_address}/unspent/all"
    http.add(responses.GET, url, json=unspent_list(mainnet_address, []))

    assert main.name == "mainnet"
    assert main.coins(mainnet_address) == []


# --- Secrets ---


def leaks_a_key(text: str) -> bool:
    """Either key, or any 8 characters in a row of one."""
    return any(key[start : start + 8] in text for key in (ARC_KEY, WOC_KEY) for start in range(len(key) - 7))


def test_keys_never_reach_details_exceptions_or_logs(http, keyed_network, signed_tx, address, caplog):
    caplog.set_level(logging.DEBUG)
    # Our own logger too: another test (seed_demo) may have left "payments" at ERROR.
    caplog.set_level(logging.DEBUG, logger="payments.networks.arc")
    txid = signed_tx.txid()
    # Even an ARC that echoes the key back must not get it into our detail.
    echo = arc_error(401, "Unauthorized", f"invalid API key Bearer {ARC_KEY}")
    answers = [
        {"status": 401, "json": echo},
        {"status": 465, "json": arc_error(465, "Fee too low", "The fees are too low", txid, f"key {ARC_KEY}")},
        {"status": 500, "json": {"status": 500, "detail": f"upstream said {WOC_KEY}"}},
        # A key straddling the point where a long detail is cut must not leave its first half behind.
        {"status": 465, "json": arc_error(465, "Fee too low", "x" * 960, txid, ARC_KEY)},
        {"body": requests.exceptions.ReadTimeout(f"timed out {ARC_KEY}")},
        {"body": requests.exceptions.ConnectionError(f"refused {ARC_KEY}")},
    ]
    details = []
    for answer in answers:
        http.add(responses.POST, f"{ARC_URL}/v1/tx", **answer)
        details.append(keyed_network.broadcast(signed_tx.hex()).detail)
        http.add(responses.GET, f"{ARC_URL}/v1/tx/{txid}", **answer)
        details.append(keyed_network.status(txid).detail)
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", status=429, json={"error": WOC_KEY})
    with pytest.raises(NetworkUnavailable) as raised:
        keyed_network.coins(address)
    http.add(responses.GET, f"{WOC}/address/{address}/unspent/all", json={"result": [], "error": f"bad {WOC_KEY}"})
    with pytest.raises(NetworkUnavailable) as raised_again:
        keyed_network.coins(address)

    written = [*details, str(raised.value), str(raised_again.value), repr(keyed_network), caplog.text]
    written += [record.getMessage() for record in caplog.records]
    assert not [text for text in written if leaks_a_key(text)]
    assert caplog.records  # the failures were logged, just without the keys
