"""GET /healthz: 200 when database, broker, beat, price, network and settlement backlog are fine, else 503."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import requests
import responses
import time_machine
from django.db import OperationalError, connection
from django.db.backends.utils import CursorWrapper
from django.test import Client

from energypay import health
from energypay.celery import app
from energypay.ops.models import Heartbeat
from energypay.tasks import HEARTBEAT, heartbeat
from payments.figures import usable_quote
from payments.models import Settlement
from tests.energypay.opskit import NOW, open_line, quote, settlement, tick

URL = "/healthz"
WOC_CHAIN_INFO = "https://api.whatsonchain.com/v1/bsv/test/chain/info"


@pytest.fixture(autouse=True)
def _fresh_memo():
    health.memo.clear()  # the network's answer is remembered per process, not across tests
    yield
    health.memo.clear()


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def healthy(db, frozen):
    """Beat ticked a minute ago, a fresh price, nothing stuck."""
    tick(NOW - timedelta(minutes=1))
    quote(NOW - timedelta(minutes=2))


def get(client) -> tuple[int, dict]:
    response = client.get(URL)
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, json.loads(response.content)


def test_a_healthy_deployment_answers_200_to_anyone(client, healthy):
    status, body = get(client)
    assert status == 200
    assert body["status"] == "ok"
    checks = body["checks"]
    assert set(checks) == {"database", "broker", "beat", "price", "bsv_network", "settlement_backlog"}
    assert all(check["ok"] for check in checks.values())
    assert checks["beat"] == {"last_tick": (NOW - timedelta(minutes=1)).isoformat(), "age_seconds": 60, "ok": True}
    assert checks["price"]["age_seconds"] == 120
    assert checks["bsv_network"] == {"name": "local", "reachable": True, "detail": "in-process ledger", "ok": True}
    assert checks["settlement_backlog"] == {"signed_older_than_5min": 0, "overdue_households": 0, "ok": True}


def test_head_works_and_writes_are_refused(client, healthy):
    assert client.head(URL).status_code == 200
    assert client.post(URL).status_code == 405


def test_the_heartbeat_job_keeps_one_row_up_to_date(db, frozen):
    heartbeat.apply()
    frozen.shift(timedelta(minutes=1))
    heartbeat.apply()
    assert list(Heartbeat.objects.values_list("name", "last_tick")) == [(HEARTBEAT, NOW + timedelta(minutes=1))]


def test_a_beat_silent_for_over_three_minutes_fails(client, healthy, frozen):
    frozen.shift(timedelta(minutes=2))  # the tick is 3:00 old
    assert get(client)[0] == 200
    frozen.shift(timedelta(seconds=1))
    status, body = get(client)
    assert status == 503
    assert body["status"] == "fail"
    assert body["checks"]["beat"]["ok"] is False
    assert body["checks"]["beat"]["age_seconds"] == 181
    assert all(check["ok"] for name, check in body["checks"].items() if name != "beat")


def test_no_tick_ever_fails(client, healthy):
    Heartbeat.objects.all().delete()
    status, body = get(client)
    assert status == 503
    assert body["checks"]["beat"] == {"last_tick": None, "age_seconds": None, "ok": False}


def test_a_tick_written_by_another_process_is_seen(client, healthy, frozen):
    # The worker that runs the heartbeat is another process: what it shares with web is the database.
    heartbeat.apply()
    frozen.shift(timedelta(minutes=2))
    assert get(client)[1]["checks"]["beat"]["age_seconds"] == 120


def test_price_age_is_judged_against_price_max_age(client, healthy, frozen, settings):
    settings.PRICE_MAX_AGE = timedelta(minutes=15)
    frozen.shift(timedelta(minutes=12))  # the quote is 14 minutes old
    tick(NOW + timedelta(minutes=12))
    assert get(client)[1]["checks"]["price"]["ok"] is True
    frozen.shift(timedelta(minutes=2))  # 16 minutes
    tick(NOW + timedelta(minutes=14))
    status, body = get(client)
    assert status == 503
    assert body["checks"]["price"] == {
        "fetched_at": (NOW - timedelta(minutes=2)).isoformat(),
        "age_seconds": 960,
        "ok": False,
    }


def test_no_price_at_all_fails(client, db, frozen):
    tick(NOW)
    status, body = get(client)
    assert status == 503
    assert body["checks"]["price"] == {"fetched_at": None, "age_seconds": None, "ok": False}


def test_a_quote_stamped_in_the_future_is_no_price_as_settlement_refuses_it(client, db, frozen):
    # Before payments/figures.py, /healthz took the newest quote whatever its stamp and said ok
    # while every settlement deferred for want of a price.
    tick(NOW)
    quote(NOW + timedelta(minutes=10))  # a wrong clock
    status, body = get(client)
    assert status == 503
    assert body["checks"]["price"] == {"fetched_at": None, "age_seconds": None, "ok": False}
    assert usable_quote(NOW) is None


def test_a_fresh_quote_is_not_hidden_by_one_from_a_wrong_clock(client, healthy, frozen):
    quote(NOW + timedelta(minutes=10))
    status, body = get(client)
    assert status == 200
    assert body["checks"]["price"]["age_seconds"] == 120


def test_a_settlement_left_signed_over_five_minutes_fails(client, healthy, frozen, household):
    with time_machine.travel(NOW - timedelta(minutes=4), tick=False):
        settlement(household, Settlement.State.SIGNED)
    assert get(client)[0] == 200  # four minutes: the sweeper may still send it
    frozen.shift(timedelta(minutes=1, seconds=1))
    status, body = get(client)
    assert status == 503
    assert body["checks"]["settlement_backlog"] == {
        "signed_older_than_5min": 1,
        "overdue_households": 0,
        "ok": False,
    }


def test_households_in_arrears_are_counted_without_failing(client, healthy, make_household):
    debtors = [make_household(), make_household()]
    for debtor in debtors:
        open_line(debtor, NOW - timedelta(hours=3), "0.25")  # the 08:05 and 09:05 runs should have paid it
    open_line(make_household(), NOW - timedelta(hours=1), "0.25")  # 09:00: the 10:05 run pays it
    status, body = get(client)
    assert status == 200
    assert body["checks"]["settlement_backlog"]["overdue_households"] == 2


def test_an_unreachable_broker_fails_quickly_and_names_no_host(client, healthy, monkeypatch):
    monkeypatch.setattr(app.conf, "broker_url", "redis://:broker-secret@127.0.0.1:1/0")
    started = time.monotonic()
    status, body = get(client)
    assert time.monotonic() - started < 5
    assert status == 503
    assert body["checks"]["broker"] == {"ok": False, "error": "OperationalError"}
    assert "127.0.0.1" not in json.dumps(body) and "broker-secret" not in json.dumps(body)


def test_a_database_that_fails_fails_every_check_that_needs_it_without_saying_why(client, healthy, monkeypatch):
    def refuse(self, sql, params=None):
        raise OperationalError('connection to server at "db.internal" (10.0.0.5), port 5432 failed')

    with monkeypatch.context() as patched:  # the test's own teardown needs the database back
        patched.setattr(CursorWrapper, "execute", refuse)
        status, body = get(client)
    assert status == 503
    checks = body["checks"]
    assert checks["database"] == {"ok": False, "error": "OperationalError"}
    for name in ("beat", "price", "settlement_backlog"):
        assert checks[name] == {"ok": False, "error": "database unavailable"}
    assert "db.internal" not in json.dumps(body) and "10.0.0.5" not in json.dumps(body)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="statement timeouts are PostgreSQL's")
def test_a_slow_query_is_cut_off(db):
    with pytest.raises(OperationalError) as error, health.time_limited(0.05), connection.cursor() as cursor:
        cursor.execute("SELECT pg_sleep(2)")
    assert health._failed("database", error.value) == {"ok": False, "error": "QueryCanceled"}
    with health.time_limited(0.05), connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    with connection.cursor() as cursor:  # the caller's timeout is back once the block ends
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] != "50ms"


# --- The BSV network, asked at most once per HEALTH_CACHE_SECONDS --------------------------------


@pytest.fixture
def testnet(settings):
    settings.BSV_NETWORK = "testnet"
    settings.WOC_API_KEY = "woc-key-that-must-not-leak"
    settings.ARC_API_KEY = "arc-key-that-must-not-leak"


@responses.activate
def test_testnet_asks_whatsonchain_once_per_cache_period(client, healthy, testnet, frozen):
    chain_info = responses.add(responses.GET, WOC_CHAIN_INFO, json={"chain": "test", "blocks": 1_650_000})
    status, body = get(client)
    assert status == 200
    assert body["checks"]["bsv_network"] == {
        "name": "testnet",
        "reachable": True,
        "detail": "WhatsOnChain height 1650000",
        "ok": True,
    }
    for _ in range(5):
        get(client)
    assert chain_info.call_count == 1
    health.memo._values["bsv_network"] = (time.monotonic() - 31, health.memo._values["bsv_network"][1])
    get(client)
    assert chain_info.call_count == 2


@responses.activate
@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        ({"status": 503}, "WhatsOnChain: HTTP 503"),
        ({"body": requests.ConnectTimeout("api.whatsonchain.com timed out")}, "WhatsOnChain: ConnectTimeout"),
        ({"body": "<html>"}, "WhatsOnChain: no chain info"),
    ],
)
def test_whatsonchain_down_fails_with_a_short_reason(client, healthy, testnet, reply, detail):
    responses.add(responses.GET, WOC_CHAIN_INFO, **reply)
    status, body = get(client)
    assert status == 503
    assert body["checks"]["bsv_network"] == {"name": "testnet", "reachable": False, "detail": detail, "ok": False}
    assert "must-not-leak" not in json.dumps(body)
    assert len(responses.calls) == 1  # no retries, no back-off sleeps


@responses.activate
def test_an_unreachable_node_is_reported_without_its_url(client, healthy, settings):
    settings.BSV_NETWORK = "regtest"
    settings.BSV_NODE_RPC_URL = "http://rpcuser:rpc-password@10.1.2.3:18332"
    responses.add(responses.POST, "http://10.1.2.3:18332/", body=requests.ConnectionError("refused"))
    status, body = get(client)
    assert status == 503
    assert body["checks"]["bsv_network"] == {
        "name": "regtest",
        "reachable": False,
        "detail": "no answer from the node",
        "ok": False,
    }


@responses.activate
def test_a_live_node_is_reachable(client, healthy, settings):
    settings.BSV_NETWORK = "regtest"
    settings.BSV_NODE_RPC_URL = "http://rpcuser:rpc-password@10.1.2.3:18332"
    rpc = responses.add(
        responses.POST, "http://10.1.2.3:18332/", json={"result": {"chain": "regtest", "blocks": 432}, "error": None}
    )
    assert get(client)[1]["checks"]["bsv_network"]["detail"] == "height 432"
    assert json.loads(rpc.calls[0].request.body)["method"] == "getblockchaininfo"


def test_healthz_is_not_redirected_to_https_but_pages_are(healthy, settings):
    settings.SECURE_SSL_REDIRECT = True
    browser = Client()  # a new client builds its middleware with these settings
    assert browser.get(URL).status_code == 200
    response = browser.get("/")
    assert response.status_code == 301
    assert response["Location"].startswith("https://")
