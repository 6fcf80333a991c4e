"""ARC's callbacks (POST /api/v1/arc/callback): ARC tells us where our transactions are, polling stays.

The first tests run a fake ARC over real HTTP (an http.server thread): it takes the broadcast, reads
the callback URL and token the broadcast registered, and posts its callbacks to the live test server,
as ARC's callbacker does. The others post callbacks with Django's test client: tokens, replays, old
timestamps, bodies that are not callbacks, and what each status does to a settlement or a pass.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
import requests
from bsv import Transaction
from django.core.management import call_command
from django.utils import timezone

from lib.periods import HOUR, floor_hour
from meters.models import HourlyUsage, Household
from payments import passes
from payments.broadcast import send_one
from payments.models import ArcCallback, PaymentState, Settlement, SettlementLine, Utxo
from payments.networks import get_network
from payments.settlement import settle_household
from tests.payments import crashkit

TOKEN = "cb-token-7f3e9a1c5d2b8e4f6a0c9d1e3b5a7c9e"
PATH = "/api/v1/arc/callback"
BLOCK = 837_394


@pytest.fixture
def callbacks_on(settings):
    settings.ARC_CALLBACK_TOKEN = TOKEN
    settings.ARC_CALLBACK_MAX_AGE = timedelta(minutes=10)
    return settings


def signed_settlement() -> Settlement:
    """A settlement signed for one household's hour, not sent yet (settle_household signs; runs send)."""
    town = crashkit.build_town(1)
    hour = floor_hour(timezone.now()) - 2 * HOUR
    crashkit.add_hour(town, hour)
    crashkit.fresh_quote()
    result = settle_household(town.household_ids[0], hour + HOUR, timezone.now())
    return Settlement.objects.get(pk=result.settlement_id)


def callback(txid: str, tx_status: str, *, at=None, **fields) -> dict:
    """ARC's Callback object (bitcoin-sv/arc doc/api.md), nanoseconds in its timestamp as ARC sends them."""
    at = at or timezone.now()
    return {
        "timestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "092Z",
        "txid": txid,
        "txStatus": tx_status,
        **fields,
    }


def mined(txid: str, **fields) -> dict:
    return callback(txid, "MINED", **{"blockHeight": BLOCK, "blockHash": "00" * 32, "merklePath": "fe12c7"} | fields)


# --- A fake ARC over HTTP -------------------------------------------------------------------------


class FakeArc:
    """POST /v1/tx answers STORED; then, from another thread, posts ``script``'s callbacks to the
    registered X-CallbackUrl with the registered token, and records what our server answered."""

    def __init__(self) -> None:
        self.script: list[dict] = []  # callbacks to send after a broadcast; {"txid": None} is filled in
        self.broadcasts: list[dict] = []  # headers of each POST /v1/tx
        self.answers: list[tuple[int, dict]] = []
        self.go = threading.Event()  # set: call back (ARC's answer to the broadcast is recorded by then)
        self.go.set()
        self.done = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                txid = Transaction.from_hex(body["rawTx"]).txid()
                fake.broadcasts.append(dict(self.headers))
                answer = json.dumps({"txid": txid, "txStatus": "STORED", "status": 200, "title": "OK"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                url, token = self.headers.get("X-CallbackUrl"), self.headers.get("X-CallbackToken")
                if url and token:
                    threading.Thread(target=fake.call_back, args=(url, token, txid), daemon=True).start()
                else:
                    fake.done.set()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def call_back(self, url: str, token: str, txid: str) -> None:
        try:
            self.go.wait(10)
            for item in self.script:
                body = {**item, "txid": item.get("txid") or txid}
                answer = requests.post(url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
                self.answers.append((answer.status_code, answer.json()))
        finally:
            self.done.set()


@pytest.fixture
def fake_arc() -> Iterator[FakeArc]:
    fake = FakeArc()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def on_testnet(settings, fake_arc, live_server, callbacks_on):
    """BSV_NETWORK=testnet through the fake ARC, with SITE_URL the live server's."""
    settings.BSV_NETWORK = "testnet"
    settings.ARC_URL = fake_arc.url
    settings.SITE_URL = live_server.url
    return settings


def test_a_broadcast_registers_the_callback_and_arc_confirms_the_settlement_over_http(
    transactional_db, on_testnet, fake_arc, live_server, caplog
):
    settlement = signed_settlement()
    fake_arc.script = [callback("", "SEEN_ON_NETWORK"), mined("")]
    fake_arc.go.clear()  # the broadcast's answer first, so the first callback finds the settlement seen
    caplog.set_level(logging.DEBUG)

    assert send_one(Settlement, settlement.pk, get_network()) == "seen"
    fake_arc.go.set()
    assert fake_arc.done.wait(15), "the fake ARC never finished calling back"

    [headers] = fake_arc.broadcasts
    assert headers["X-CallbackUrl"] == live_server.url + PATH
    assert headers["X-CallbackToken"] == TOKEN
    assert headers["X-FullStatusUpdates"] == "true"
    assert fake_arc.answers == [(200, {"outcome": "unchanged"}), (200, {"outcome": "applied"})]
    settlement.refresh_from_db()
    assert settlement.state == PaymentState.CONFIRMED
    assert f"in block {BLOCK}" in settlement.detail and settlement.confirmed_at is not None
    assert Utxo.objects.filter(reserved_by=settlement, state=Utxo.State.SPENT).exists()
    seen, confirmed = ArcCallback.objects.order_by("received_at", "pk")
    assert (seen.tx_status, seen.outcome, seen.payment_id) == ("SEEN_ON_NETWORK", "unchanged", settlement.pk)
    assert (confirmed.tx_status, confirmed.outcome, confirmed.block_height) == ("MINED", "applied", BLOCK)
    assert (confirmed.txid, confirmed.payment_kind) == (settlement.txid, "settlement")
    assert TOKEN not in caplog.text
    assert not ArcCallback.objects.filter(body__contains=TOKEN).exists()


def test_a_rejection_arc_calls_back_fails_the_settlement_and_its_hours_are_owed_again(
    transactional_db, on_testnet, fake_arc
):
    settlement = signed_settlement()
    fake_arc.script = [callback("", "REJECTED", extraInfo="arc error 461: script verify failed")]

    with mock.patch("payments.tasks.resync_wallet.delay") as resync:
        send_one(Settlement, settlement.pk, get_network())
        assert fake_arc.done.wait(15)

    assert fake_arc.answers == [(200, {"outcome": "applied"})]
    settlement.refresh_from_db()
    assert settlement.state == PaymentState.REJECTED and "script verify failed" in settlement.detail
    assert not SettlementLine.objects.filter(settlement=settlement, released=False).exists()
    assert HourlyUsage.objects.filter(settlement_lines__settlement=settlement).count() == 1
    assert not Utxo.objects.filter(reserved_by=settlement).exists()  # forgotten; the resync re-adds what exists
    resync.assert_called_once_with(settlement.household.wallet.address)


def test_without_a_callback_token_the_broadcast_registers_no_callback(transactional_db, on_testnet, fake_arc):
    on_testnet.ARC_CALLBACK_TOKEN = ""
    settlement = signed_settlement()

    assert send_one(Settlement, settlement.pk, get_network()) == "seen"

    [headers] = fake_arc.broadcasts
    assert "X-CallbackUrl" not in headers and "X-CallbackToken" not in headers


# --- Callbacks through the test client ------------------------------------------------------------


def post(client, body, token: str | None = TOKEN, **headers):
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(PATH, data=data, content_type="application/json", headers=headers)


@pytest.fixture
def seen(db, callbacks_on) -> Settlement:
    settlement = signed_settlement()
    settlement.mark_accepted(PaymentState.SEEN, "ARC STORED")
    settlement.refresh_from_db()
    return settlement


def assert_nothing_changed(settlement: Settlement) -> None:
    before = (settlement.state, settlement.detail, settlement.updated_at)
    settlement.refresh_from_db()
    assert (settlement.state, settlement.detail, settlement.updated_at) == before


@pytest.mark.parametrize(
    "token",
    [None, "", "wrong-token-7f3e9a1c5d2b8e4f6a0c9d1e3b5a7c9", TOKEN + "x", TOKEN[:-1]],
    ids=["no-header", "empty", "wrong", "longer", "shorter"],
)
def test_a_callback_without_the_right_token_is_401_and_changes_nothing(client, seen, token):
    response = post(client, mined(seen.txid), token=token)

    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized", "message": "missing or wrong callback token"}}
    assert response["WWW-Authenticate"] == "Bearer"
    assert_nothing_changed(seen)
    [logged] = ArcCallback.objects.all()
    assert (logged.outcome, logged.digest, logged.payment_id) == ("unauthorized", "", None)


def test_another_authorization_scheme_is_401(client, seen):
    response = post(client, mined(seen.txid), token=None, Authorization=f"Basic {TOKEN}")
    assert response.status_code == 401
    assert_nothing_changed(seen)


def test_no_callback_is_accepted_while_no_token_is_configured(client, seen, settings):
    settings.ARC_CALLBACK_TOKEN = ""
    assert post(client, mined(seen.txid), token="").status_code == 401
    assert_nothing_changed(seen)


def test_a_replayed_callback_is_401_and_changes_nothing_more(client, seen):
    body = mined(seen.txid)
    first = post(client, body)
    seen.refresh_from_db()
    second = post(client, body)

    assert (first.status_code, first.json()) == (200, {"outcome": "applied"})
    assert second.status_code == 401 and "delivered before" in second.json()["error"]["message"]
    assert_nothing_changed(seen)
    assert list(ArcCallback.objects.order_by("pk").values_list("outcome", flat=True)) == ["applied", "replayed"]


def test_the_same_status_again_with_a_new_timestamp_is_idempotent(client, seen):
    assert post(client, mined(seen.txid)).json() == {"outcome": "applied"}
    seen.refresh_from_db()
    later = mined(seen.txid, at=timezone.now() + timedelta(seconds=5))

    assert post(client, later).json() == {"outcome": "unchanged"}
    assert_nothing_changed(seen)


@pytest.mark.parametrize(
    "shift", [timedelta(minutes=-11), timedelta(days=-3), timedelta(minutes=2)], ids=["old", "ancient", "future"]
)
def test_a_callback_with_an_old_or_future_timestamp_is_401_and_changes_nothing(client, seen, shift):
    response = post(client, mined(seen.txid, at=timezone.now() + shift))

    assert response.status_code == 401 and "timestamp" in response.json()["error"]["message"]
    assert_nothing_changed(seen)
    assert ArcCallback.objects.get().outcome == "stale"


def test_the_age_limit_is_a_setting(client, seen, settings):
    settings.ARC_CALLBACK_MAX_AGE = timedelta(hours=1)
    assert post(client, mined(seen.txid, at=timezone.now() - timedelta(minutes=30))).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"count": 1, "callbacks": []}',
        '{"txid": "ab", "txStatus": "MINED", "timestamp": "2026-01-01T00:00:00Z"}',
        '{"txStatus": "MINED", "timestamp": "2026-01-01T00:00:00Z"}',
        '{"txid": "' + "a" * 64 + '", "txStatus": "MINED", "timestamp": "yesterday"}',
        '{"txid": "' + "a" * 64 + '", "txStatus": "MINED", "timestamp": "2026-01-01T00:00:00"}',
        '{"txid": "' + "a" * 64 + '", "txStatus": "MINED", "timestamp": "2026-01-01T00:00:00Z", "blockHeight": NaN}',
        b"\xff\xfe",
    ],
)
def test_a_body_that_is_not_a_callback_is_400_and_changes_nothing(client, seen, body):
    response = post(client, body)
    assert response.status_code == 400 and response.json()["error"]
    assert_nothing_changed(seen)
    assert ArcCallback.objects.get().outcome == "malformed"


def test_a_body_over_the_limit_is_413(client, seen):
    body = mined(seen.txid, merklePath="ab" * 40_000)
    assert post(client, body).status_code == 413
    assert_nothing_changed(seen)


def test_only_post_is_allowed(client, db):
    response = client.get(PATH)
    assert response.status_code == 405 and response.json() == {
        "error": {"code": "method_not_allowed", "message": "use POST"}
    }


def test_a_callback_about_a_transaction_we_do_not_know_is_logged_and_answered_200(client, db, callbacks_on):
    response = post(client, mined("ab" * 32))
    assert response.json() == {"outcome": "unknown_txid"}
    assert ArcCallback.objects.get().outcome == "unknown_txid"


def test_double_spend_attempted_is_noted_and_the_settlement_waits_for_one_side_to_be_mined(client, seen):
    rival = "cd" * 32
    response = post(client, callback(seen.txid, "DOUBLE_SPEND_ATTEMPTED", competingTxs=[rival]))

    assert response.json() == {"outcome": "noted"}
    assert_nothing_changed(seen)  # its hours stay paid: this very transaction may yet be mined
    assert rival in ArcCallback.objects.get().detail
    # The rival won: ARC rejects ours, naming the conflict; now the settlement is a double spend.
    later = timezone.now() + timedelta(seconds=1)
    extra = "txn-mempool-conflict"
    with mock.patch("payments.tasks.resync_wallet.delay"):
        rejected = post(client, callback(seen.txid, "REJECTED", at=later, extraInfo=extra))
    assert rejected.json() == {"outcome": "applied"}
    seen.refresh_from_db()
    assert seen.state == PaymentState.DOUBLE_SPEND
    assert not SettlementLine.objects.filter(settlement=seen, released=False).exists()


def test_a_late_seen_does_not_undo_a_confirmation(client, seen):
    post(client, mined(seen.txid))
    seen.refresh_from_db()
    late = callback(seen.txid, "SEEN_ON_NETWORK", at=timezone.now() + timedelta(seconds=1))

    assert post(client, late).json() == {"outcome": "unchanged"}
    assert_nothing_changed(seen)


def test_mined_after_a_failure_changes_nothing_and_is_logged_as_an_error(client, seen, caplog):
    with mock.patch("payments.tasks.resync_wallet.delay"):
        post(client, callback(seen.txid, "REJECTED", extraInfo="bad"))
    seen.refresh_from_db()

    response = post(client, mined(seen.txid, at=timezone.now() + timedelta(seconds=1)))

    assert response.json() == {"outcome": "unchanged"}
    assert_nothing_changed(seen)
    assert "arc_callback_accepted_after_failure" in caplog.text


def test_a_race_lost_to_polling_is_a_no_op(client, seen):
    """The row moved on between the callback's read and its lock: the lifecycle method skips it."""
    real = Settlement.mark_accepted

    def polling_confirmed_first(self, state, detail):
        Settlement.objects.filter(pk=self.pk).update(state=PaymentState.CONFIRMED, detail="polled")
        return real(self, state, detail)

    with mock.patch.object(Settlement, "mark_accepted", polling_confirmed_first):
        response = post(client, mined(seen.txid))

    assert response.json() == {"outcome": "unchanged"}
    seen.refresh_from_db()
    assert (seen.state, seen.detail) == (PaymentState.CONFIRMED, "polled")


def test_a_wallet_pass_is_confirmed_by_its_callback_like_a_settlement(client, db, callbacks_on):
    town = crashkit.build_town(1)
    buyer = Household.objects.get(pk=town.household_ids[0])
    wallet_pass = passes.buy_pass(buyer, timezone.now()).community_pass  # signed, not sent

    assert post(client, mined(wallet_pass.txid)).json() == {"outcome": "applied"}

    wallet_pass.refresh_from_db()
    assert wallet_pass.state == PaymentState.CONFIRMED
    assert Utxo.objects.filter(reserved_by_pass=wallet_pass, state=Utxo.State.SPENT).exists()
    assert ArcCallback.objects.get().payment_kind == "community_pass"


def test_the_callback_log_is_visible_to_staff_in_the_admin(staff_client, client, seen):
    post(client, mined(seen.txid))
    page = staff_client.get("/admin/payments/arccallback/")
    assert page.status_code == 200
    assert seen.txid in page.content.decode()
    entry = ArcCallback.objects.get()
    detail = staff_client.get(f"/admin/payments/arccallback/{entry.pk}/change/")
    assert detail.status_code == 200 and f"/admin/payments/settlement/{seen.pk}/change/" in detail.content.decode()
    assert TOKEN not in detail.content.decode()


def test_prune_keeps_what_refuses_replays(db, callbacks_on, settings):
    now = timezone.now()
    old = ArcCallback.objects.create(outcome="applied", received_at=now - timedelta(days=40), digest="a" * 64)
    recent = ArcCallback.objects.create(outcome="applied", received_at=now - timedelta(minutes=5), digest="b" * 64)
    settings.RETENTION_ARC_CALLBACK_DAYS = 1
    call_command("prune_arc_callbacks", stdout=io.StringIO())
    assert list(ArcCallback.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not ArcCallback.objects.filter(pk=old.pk).exists()


def test_callbacks_racing_the_broadcasts_answer_leave_the_settlement_confirmed(transactional_db, on_testnet, fake_arc):
    """ARC may call back before our broadcast's answer is recorded: whichever comes first, mined wins."""
    settlement = signed_settlement()
    fake_arc.script = [callback("", "SEEN_ON_NETWORK"), mined("")]

    send_one(Settlement, settlement.pk, get_network())
    assert fake_arc.done.wait(15)

    assert [status for status, _ in fake_arc.answers] == [200, 200]
    settlement.refresh_from_db()
    assert settlement.state == PaymentState.CONFIRMED
