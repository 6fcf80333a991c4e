"""Broadcast failures (network down, 5xx, rate limits, timeouts, refusals): retried with backoff, shown, nothing lost.

The network is ARC + WhatsOnChain (payments.networks.arc, the testnet/mainnet code, unchanged)
answered by ``responses`` from the local ledger: an accepted broadcast really lands on the ledger,
a status or a coin list is the ledger's, so the books can be checked to the satoshi at the end.
An outage is scripted per test (FakeArc.outage); WhatsOnChain stays up.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
import responses
import time_machine
from bsv import Transaction
from django.db import connection
from django.urls import reverse

from meters.models import HourlyUsage
from payments import runs, tasks
from payments.broadcast import (
    MAX_BACKOFF,
    broadcast_backoff,
    due_for_rebroadcast,
    refresh_pending,
    send_one,
    sweep_signed,
)
from payments.models import LedgerTransaction, PriceQuote, Settlement, SettlementLine, Utxo, Wallet
from payments.networks import NetworkUnavailable, Outcome, Reply
from payments.networks.arc import ArcWhatsOnChain
from payments.networks.local import LocalLedger
from payments.settlement import settle_household, settle_many
from payments.wallets import balance_satoshis
from tests.payments import crashkit

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
ARC_URL = "https://arc.example.test"
WOC = "https://api.whatsonchain.com/v1/bsv/test"
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

pytestmark = pytest.mark.django_db


# --- ARC and WhatsOnChain, answered from the local ledger ---------------------------------------


def arc_error(status: int, title: str, detail: str = "", extra: str = "") -> str:
    return json.dumps({"status": status, "title": title, "detail": detail, "extraInfo": extra, "txid": ""})


def arc_status(txid: str, tx_status: str, extra: str = "", **fields: object) -> dict:
    return {"txid": txid, "status": 200, "title": "OK", "txStatus": tx_status, "extraInfo": extra, **fields}


# What ARC's client meets when the network is in trouble: (scripted answer, what the settlement then shows).
OUTAGES = {
    "connection refused": (requests.ConnectionError("connection refused"), "ARC unreachable (ConnectionError)"),
    "timeout": (requests.ReadTimeout("read timed out"), "ARC unreachable (ReadTimeout)"),
    "HTTP 503": ((503, {}, arc_error(503, "Service Unavailable", "try later")), "ARC HTTP 503"),
    "HTTP 502 page": ((502, {"Content-Type": "text/html"}, "<html><body>Bad Gateway</body></html>"), "ARC HTTP 502"),
    "rate limit": ((429, {"Retry-After": "30"}, arc_error(429, "Too Many Requests")), "ARC rate limit (HTTP 429)"),
}
# Refusals for good: (ARC's answer, the settlement's state, the reason it shows).
REFUSALS = {
    "REJECTED status": (
        lambda txid: (200, {}, json.dumps(arc_status(txid, "REJECTED", "mandatory-script-verify-flag-failed"))),
        Settlement.State.REJECTED,
        "mandatory-script-verify-flag-failed",
    ),
    "461 bad scripts": (
        (461, {}, arc_error(461, "Malformed transaction", "script failed", "mandatory-script-verify-flag-failed")),
        Settlement.State.REJECTED,
        "ARC 461",
    ),
    "466 conflict": (
        (466, {}, arc_error(466, "Conflicting transaction found", "", "txn-mempool-conflict")),
        Settlement.State.DOUBLE_SPEND,
        "ARC 466",
    ),
}


class FakeArc:
    """ARC's and WhatsOnChain's HTTP APIs over the local ledger; ``outage`` scripts ARC's answer to everything."""

    def __init__(self, http: responses.RequestsMock, ledger: LocalLedger) -> None:
        self.ledger = ledger
        # An exception, a (status, headers, body), or a function of the txid making one: ARC's answer to everything.
        self.outage = None
        self.broadcasts: list[str] = []  # txids POSTed, outage or not
        tx = re.escape(ARC_URL) + r"/v1/tx"
        http.add_callback(responses.POST, re.compile(tx + "$"), callback=self._broadcast)
        http.add_callback(responses.GET, re.compile(tx + r"/(?P<txid>[0-9a-f]{64})$"), callback=self._status)
        woc = re.escape(WOC)
        http.add_callback(responses.GET, re.compile(woc + r"/address/(\w+)/unspent/all$"), callback=self._unspent)
        http.add_callback(responses.GET, re.compile(woc + r"/tx/([0-9a-f]{64})/hex$"), callback=self._hex)
        http.add_callback(responses.GET, re.compile(woc + r"/chain/info$"), callback=self._chain_info)

    def _broadcast(self, request):
        raw = json.loads(request.body)["rawTx"]
        txid = Transaction.from_hex(raw).txid()
        self.broadcasts.append(txid)
        return self._scripted(txid) or self._answer(self.ledger.broadcast(raw), txid)

    def _status(self, request):
        txid = request.url.rsplit("/", 1)[1]
        if self.outage:
            return self._scripted(txid)
        reply = self.ledger.status(txid)
        if reply.outcome == Outcome.UNKNOWN:
            return 404, {}, arc_error(404, "Not found", "transaction not found")
        return self._answer(reply, txid)

    def _scripted(self, txid: str):
        return self.outage(txid) if callable(self.outage) else self.outage

    def _answer(self, reply: Reply, txid: str):
        if reply.outcome == Outcome.CONFIRMED:
            height = self._tip() - reply.confirmations + 1
            body = arc_status(txid, "MINED", reply.detail, blockHeight=height, blockHash="00" * 32)
        elif reply.outcome == Outcome.ACCEPTED:
            body = arc_status(txid, "SEEN_ON_NETWORK", reply.detail)
        else:  # the ledger's reason (txn-mempool-conflict, ...) tells a double spend from a rejection
            body = arc_status(txid, "REJECTED", reply.detail)
        return 200, {}, json.dumps(body)

    def _unspent(self, request):
        address = request.url.split("/address/")[1].split("/")[0]
        tip = self._tip()
        result = [
            {
                "tx_hash": coin.txid,
                "tx_pos": coin.vout,
                "value": coin.satoshis,
                "height": tip - coin.confirmations + 1 if coin.confirmations else 0,
                "isSpentInMempoolTx": False,
            }
            for coin in self.ledger.coins(address)
        ]
        return 200, {}, json.dumps({"address": address, "result": result, "error": ""})

    def _hex(self, request):
        txid = request.url.split("/tx/")[1].split("/")[0]
        return 200, {}, LedgerTransaction.objects.get(txid=txid).raw

    def _chain_info(self, request):
        return 200, {}, json.dumps({"chain": "test", "blocks": self._tip()})

    def _tip(self) -> int:
        from payments.networks.local import _tip

        return _tip()


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def ledger(db) -> LocalLedger:
    return LocalLedger()


@pytest.fixture
def arc(ledger, monkeypatch) -> FakeArc:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        fake = FakeArc(http, ledger)
        network = ArcWhatsOnChain(arc_url=ARC_URL, arc_api_key="", woc_api_key="", mainnet=False, sleep=lambda _: None)
        fake.network = network
        # The hourly run and the watcher ask get_network() for the network: this one.
        monkeypatch.setattr(runs, "get_network", lambda: network)
        monkeypatch.setattr(tasks, "get_network", lambda: network)
        yield fake


@pytest.fixture
def town(clock) -> crashkit.Town:
    """Three funded households owing two hours each before PERIOD_END."""
    town = crashkit.build_town(3)
    for hour in (PERIOD_END - timedelta(hours=2), PERIOD_END - timedelta(hours=1)):
        crashkit.add_hour(town, hour)
    crashkit.fresh_quote()
    return town


def settlements(town: crashkit.Town) -> list[Settlement]:
    return list(Settlement.objects.filter(household_id__in=town.household_ids).order_by("household_id", "pk"))


def nothing_lost(town: crashkit.Town) -> None:
    """Every hour is either paid by exactly one live settlement (signed counts) or still open: none vanishes."""
    live = SettlementLine.objects.filter(released=False).exclude(settlement__state__in=Settlement.FAILED)
    paid = defaultdict(Decimal)
    for household_id, eur in live.values_list("settlement__household_id", "eur"):
        paid[household_id] += eur
    for household_id in town.household_ids:
        usage = HourlyUsage.objects.filter(household_id=household_id)
        owed = sum(usage.values_list("cost_eur", flat=True))
        still_open = sum(usage.filter(settled_at__isnull=True).values_list("cost_eur", flat=True))
        assert owed == paid[household_id] + still_open
        assert usage.filter(settled_at__isnull=False).count() == live.filter(usage__household_id=household_id).count()


# --- The schedule ---------------------------------------------------------------------------------


def test_the_backoff_doubles_from_one_minute_up_to_an_hour():
    waits = [broadcast_backoff(attempts) / MINUTE for attempts in range(9)]
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert broadcast_backoff(10_000) == MAX_BACKOFF


def test_the_sweeper_sends_exactly_the_settlements_whose_backoff_has_passed(clock, django_assert_num_queries):
    town = crashkit.build_town(16)
    crashkit.add_hour(town, PERIOD_END - timedelta(hours=1))
    crashkit.fresh_quote()
    results = settle_many(town.household_ids, PERIOD_END, NOW)
    ids = [results[h].settlement_id for h in town.household_ids]
    # Two settlements per number of tries 0..7: one due this very second, one due a second from now.
    due = set()
    for n, settlement_id in enumerate(ids):
        attempts, late = divmod(n, 2)
        waited = broadcast_backoff(attempts) - (SECOND if late else timedelta(0))
        Settlement.objects.filter(pk=settlement_id).update(broadcast_attempts=attempts, updated_at=NOW - waited)
        if not late:
            due.add(settlement_id)
    sent = []

    class Down:
        name = "down"

        def broadcast(self, raw_hex: str) -> Reply:
            sent.append(Transaction.from_hex(raw_hex).txid())
            raise NetworkUnavailable("connection refused")

    assert sweep_signed(Settlement, Down()) == len(due) == 8
    assert sorted(sent) == sorted(Settlement.objects.filter(pk__in=due).values_list("txid", flat=True))
    # Each try counted, its answer kept, and its backoff restarted now.
    assert {(s.broadcast_attempts - divmod(n, 2)[0], s.updated_at, s.detail) for n, s in _by_pk(ids, due)} == {
        (1, NOW, "connection refused")
    }
    # Nothing is due now: one query finds that out.
    with django_assert_num_queries(1):
        assert sweep_signed(Settlement, Down()) == 0
    clock.shift(SECOND)
    assert sweep_signed(Settlement, Down()) == 8  # the other eight, a second later


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_the_sweeper_finds_due_settlements_through_the_state_index():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # an empty table: show the index can serve it
        plan = due_for_rebroadcast(NOW).explain()
    assert "settlement_state" in plan and "updated_at <=" in plan.split("Filter")[0], plan


def _by_pk(ids: list[int], wanted: set[int]):
    rows = Settlement.objects.in_bulk(wanted)
    return [(n, rows[pk]) for n, pk in enumerate(ids) if pk in wanted]


# --- Outages: retried with backoff, visible, nothing lost, then paid ------------------------------


@pytest.mark.parametrize("outage", OUTAGES)
def test_an_outage_leaves_payments_signed_and_retried_with_backoff_until_the_network_is_back(
    outage, town, arc, ledger, clock, staff_client
):
    answer, shown = OUTAGES[outage]
    arc.outage = answer

    assert runs.settle_households(town.household_ids, PERIOD_END) == {"signed": 3}

    paid = settlements(town)
    assert [(s.state, s.broadcast_attempts) for s in paid] == [(Settlement.State.SIGNED, 1)] * 3
    assert all(shown in s.detail for s in paid), [s.detail for s in paid]
    assert not LedgerTransaction.objects.filter(txid__in=[s.txid for s in paid]).exists()
    assert set(Utxo.objects.filter(reserved_by__in=paid).values_list("state", flat=True)) == {Utxo.State.RESERVED}
    nothing_lost(town)
    # Staff see where each payment is and why (the admin's settlement page).
    page = staff_client.get(reverse("admin:payments_settlement_change", args=[paid[0].pk])).content.decode()
    assert "Signed" in page and shown in page

    # After 1, 2 and 3 tries the next waits 2, 4 and 8 minutes; not a second less.
    for tries, wait in ((1, 2), (2, 4), (3, 8)):
        sent = len(arc.broadcasts)
        clock.shift(wait * MINUTE - SECOND)
        assert sweep_signed(Settlement, arc.network) == 0
        assert len(arc.broadcasts) == sent
        clock.shift(SECOND)
        assert sweep_signed(Settlement, arc.network) == 3
        assert len(arc.broadcasts) == sent + 3
        assert {(s.state, s.broadcast_attempts) for s in settlements(town)} == {(Settlement.State.SIGNED, tries + 1)}
        nothing_lost(town)

    # The network is back: the next due try is accepted; the watcher follows the payments to a block.
    arc.outage = None
    clock.shift(16 * MINUTE)
    tasks.watch_settlements()
    assert {(s.state, s.broadcast_attempts) for s in settlements(town)} == {(Settlement.State.SEEN, 5)}
    ledger.mine()
    tasks.watch_settlements()
    assert {s.state for s in settlements(town)} == {Settlement.State.CONFIRMED}
    assert all("MINED" in s.detail for s in settlements(town))
    assert crashkit.check_books(town, PERIOD_END) == []


def test_a_network_object_that_raises_is_a_counted_try_not_a_crash(town, ledger, clock, staff_client, monkeypatch):
    """NetworkUnavailable from broadcast() (a network client that raises): staff's Rebroadcast shows it, counts it."""

    class Unreachable:
        name = "unreachable"

        def broadcast(self, raw_hex: str) -> Reply:
            raise NetworkUnavailable("connection refused by 127.0.0.1")

    household_id = town.household_ids[0]
    settlement_id = settle_household(household_id, PERIOD_END, NOW).settlement_id
    assert send_one(Settlement, settlement_id, Unreachable()) == Settlement.State.SIGNED

    from payments.admin import actions as payments_admin

    monkeypatch.setattr(payments_admin, "get_network", Unreachable)
    response = staff_client.post(
        reverse("admin:payments_settlement_changelist"),
        {"action": "rebroadcast", "_selected_action": [settlement_id]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Broadcast 1 settlement: 1 signed." in response.content.decode()
    settlement = Settlement.objects.get(pk=settlement_id)
    assert (settlement.state, settlement.broadcast_attempts, settlement.detail) == (
        Settlement.State.SIGNED,
        2,
        "connection refused by 127.0.0.1",
    )
    # The sweeper sends it once the network answers, after the backoff of two tries.
    clock.shift(4 * MINUTE - SECOND)
    assert sweep_signed(Settlement, ledger) == 0
    clock.shift(SECOND)
    assert sweep_signed(Settlement, ledger) == 1
    assert Settlement.objects.get(pk=settlement_id).state == Settlement.State.SEEN


def test_a_watcher_tick_during_an_outage_changes_nothing_and_the_next_one_confirms(town, ledger, clock):
    """status() raising (network down) stops the tick quietly; the seen payment is confirmed once it answers."""

    class Down:
        name = "down"

        def status(self, txid: str) -> Reply:
            raise NetworkUnavailable("connection refused by 127.0.0.1")

    settlement_id = settle_household(town.household_ids[0], PERIOD_END, NOW).settlement_id
    assert send_one(Settlement, settlement_id, ledger) == Settlement.State.SEEN
    ledger.mine()

    assert refresh_pending(Settlement, Down()) == 0
    assert Settlement.objects.get(pk=settlement_id).state == Settlement.State.SEEN
    assert refresh_pending(Settlement, ledger) == 1
    assert Settlement.objects.get(pk=settlement_id).state == Settlement.State.CONFIRMED


# --- Refusals: failed for good, hours owed again, coins resynced, paid by the next run -------------


@pytest.mark.parametrize("refusal", REFUSALS)
def test_a_refused_payment_reopens_its_hours_and_the_next_run_pays_them(refusal, town, arc, ledger, clock):
    answer, state, shown = REFUSALS[refusal]
    arc.outage = answer
    balances = {w.pk: balance_satoshis(w) for w in Wallet.objects.filter(household_id__in=town.household_ids)}

    assert runs.settle_households(town.household_ids, PERIOD_END) == {state.value: 3}

    failed = settlements(town)
    assert [(s.state, s.broadcast_attempts) for s in failed] == [(state, 1)] * 3
    assert all(shown in s.detail for s in failed), [s.detail for s in failed]
    # The hours are owed again; the coins are the network's (WhatsOnChain asked again), the change forgotten.
    assert not HourlyUsage.objects.filter(household_id__in=town.household_ids, settled_at__isnull=False).exists()
    assert not SettlementLine.objects.filter(settlement__in=failed, released=False).exists()
    assert not Utxo.objects.filter(txid__in=[s.txid for s in failed]).exists()
    assert {w.pk: balance_satoshis(w) for w in Wallet.objects.filter(pk__in=balances)} == balances
    nothing_lost(town)
    # A refusal is final: the sweeper never sends it again.
    clock.shift(2 * MAX_BACKOFF)
    sent = len(arc.broadcasts)
    assert sweep_signed(Settlement, arc.network) == 0
    assert len(arc.broadcasts) == sent

    # The next run (a new quote) pays the same hours once the network takes payments again.
    arc.outage = None
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("31"), fetched_at=NOW + 2 * MAX_BACKOFF)
    assert runs.settle_households(town.household_ids, PERIOD_END) == {"seen": 3}
    assert crashkit.check_books(town, PERIOD_END) == []
