"""One lifecycle for every outgoing payment (payments.models.OutgoingPayment, payments/broadcast.py).

Settlements and community passes share the states, the replies, acceptance, failure, the sweep and
the refresh; each case that is about the lifecycle rather than a kind runs for both kinds.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lib.periods import HOUR, floor_hour
from meters.models import HourlyUsage, Household
from payments import passes, runs
from payments.broadcast import refresh_pending, send_one
from payments.models import CommunityPass, LedgerTransaction, OutgoingPayment, PaymentState, Settlement, Utxo
from payments.networks import NetworkUnavailable, Outcome, Reply
from payments.networks.local import LocalLedger
from payments.settlement import settle_household
from tests.payments import crashkit

pytestmark = pytest.mark.django_db
KINDS = pytest.mark.parametrize("kind", [Settlement, CommunityPass], ids=["settlement", "pass"])


def seen_payments(kind: type[OutgoingPayment], count: int) -> list[int]:
    """``count`` payments of ``kind`` from as many new households, sent and seen by the local ledger."""
    town = crashkit.build_town(count)
    ledger = LocalLedger()
    if kind is Settlement:
        hour = floor_hour(timezone.now()) - 2 * HOUR
        crashkit.add_hour(town, hour)
        crashkit.fresh_quote()
        runs.settle_households(town.household_ids, hour + HOUR)
    else:
        for household in Household.objects.filter(pk__in=town.household_ids):
            send_one(CommunityPass, passes.buy_pass(household, timezone.now()).community_pass.pk, ledger)
    payments = kind.objects.filter(txid__in=LedgerTransaction.objects.values("txid"), state=PaymentState.SEEN)
    ids = list(payments.exclude(state=PaymentState.CONFIRMED).values_list("pk", flat=True))
    assert len(ids) >= count
    return ids


class InABlock:
    """A network that has every transaction in a block, and counts the questions."""

    name = "local"

    def __init__(self) -> None:
        self.asked = 0

    def status(self, txid: str) -> Reply:
        self.asked += 1
        return Reply(Outcome.CONFIRMED, "in block 7", 1)

    def broadcast(self, raw_hex: str) -> Reply:
        raise AssertionError("a payment the network knows is not sent again")


class Silent(InABlock):
    """A network that gives no answer."""

    def status(self, txid: str) -> Reply:
        self.asked += 1
        raise NetworkUnavailable("connection refused")


@KINDS
def test_the_refresher_confirms_a_block_in_the_same_number_of_queries_however_many_it_holds(kind):
    """Settlements and passes confirm in batches (passes went one by one before): one transaction per block."""
    network = InABlock()
    seen_payments(kind, 2)
    with CaptureQueriesContext(connection) as two:
        assert refresh_pending(kind, network) == 2
    seen_payments(kind, 5)
    with CaptureQueriesContext(connection) as five:
        assert refresh_pending(kind, network) == 5

    assert len(five) == len(two)
    assert set(kind.objects.values_list("state", flat=True)) == {PaymentState.CONFIRMED}
    spent = Utxo.objects.filter(**{f"{kind.COIN_LINK}__isnull": False})
    assert set(spent.values_list("state", flat=True)) == {Utxo.State.SPENT}
    change = Utxo.objects.filter(txid__in=kind.objects.values("txid"))
    assert change.exists() and not change.filter(confirmed=False).exists()


@KINDS
def test_no_answer_from_the_network_stops_the_refresh_tick_for_every_kind(kind):
    """The rest would fail alike: the next tick asks again (passes asked every one before)."""
    ids = seen_payments(kind, 3)
    network = Silent()

    assert refresh_pending(kind, network) == 0

    assert network.asked == 1
    assert set(kind.objects.filter(pk__in=ids).values_list("state", flat=True)) == {PaymentState.SEEN}


def test_a_refused_copy_of_a_settlement_the_network_holds_leaves_it_accepted_and_its_hours_paid():
    """Two copies of one settlement sent at once (the run and the sweeper): the network takes one and may
    say the other spends coins "spent by" the payment itself. The settlement is paid: failing it would
    reopen its hours, and the next run would pay them a second time (the fix fa27cb6 made for passes)."""
    town = crashkit.build_town(1)
    household_id = town.household_ids[0]
    hour = floor_hour(timezone.now()) - 2 * HOUR
    crashkit.add_hour(town, hour)
    crashkit.fresh_quote()
    ledger = LocalLedger()
    settlement = Settlement.objects.get(pk=settle_household(household_id, hour + HOUR, timezone.now()).settlement_id)
    assert send_one(Settlement, settlement.pk, ledger) == PaymentState.SEEN

    refused = Reply(Outcome.DOUBLE_SPEND, f"txn-mempool-conflict: input 0 is spent by {settlement.txid}")
    assert settlement.record_reply(refused, ledger) == PaymentState.SEEN

    settlement.refresh_from_db()
    assert (settlement.state, settlement.broadcast_attempts) == (PaymentState.SEEN, 2)
    assert not settlement.lines.filter(released=True).exists()
    assert not HourlyUsage.objects.filter(household_id=household_id, settled_at__isnull=True).exists()
    assert Utxo.objects.filter(txid=settlement.txid).exists()  # its change is still the wallet's


class ResentMeanwhile(InABlock):
    """Two refreshers at once: both find the transaction dropped, the other's copy arrives first, ours
    is refused as spending coins "spent by" the payment itself, and then the network holds it."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = False

    def status(self, txid: str) -> Reply:
        self.asked += 1
        return Reply(Outcome.ACCEPTED, "in the mempool") if self.sent else Reply(Outcome.UNKNOWN)

    def broadcast(self, raw_hex: str) -> Reply:
        self.sent = True
        return Reply(Outcome.DOUBLE_SPEND, "txn-mempool-conflict: input 0 is spent by the payment itself")


@KINDS
def test_a_refresher_refused_a_copy_another_refresher_sent_leaves_the_payment_accepted(kind):
    """The refresher's refusals go through the same check as a broadcast's: failing the payment would
    undo one that was made (a settlement's hours reopened and paid a second time by the next run)."""
    [payment_id] = seen_payments(kind, 1)

    assert refresh_pending(kind, ResentMeanwhile()) == 0

    payment = kind.objects.get(pk=payment_id)
    assert payment.state == PaymentState.SEEN
    assert Utxo.objects.filter(txid=payment.txid).exists()  # its change is still the wallet's
    if kind is Settlement:
        assert not payment.lines.filter(released=True).exists()


class RejectsWithoutQuestions:
    """A network that holds no coins and must not be asked about a transaction."""

    name = "local"

    def status(self, txid: str) -> Reply:
        raise AssertionError("a rejected transaction is invalid: the network is not asked whether it holds it")

    def coins(self, address: str) -> list:
        return []


def test_a_rejected_settlement_fails_without_asking_the_network_whether_it_holds_it():
    """Only a double spend may be a copy of a payment the network holds; a rejection costs no extra round trip."""
    town = crashkit.build_town(1)
    hour = floor_hour(timezone.now()) - 2 * HOUR
    crashkit.add_hour(town, hour)
    crashkit.fresh_quote()
    settlement = Settlement.objects.get(
        pk=settle_household(town.household_ids[0], hour + HOUR, timezone.now()).settlement_id
    )

    rejected = Reply(Outcome.REJECTED, "16: bad-txns-in-belowout")
    assert settlement.record_reply(rejected, RejectsWithoutQuestions()) == PaymentState.REJECTED

    settlement.refresh_from_db()
    assert (settlement.state, settlement.broadcast_attempts) == (PaymentState.REJECTED, 1)
    assert not settlement.lines.filter(released=False).exists()


@KINDS
def test_a_refusal_after_the_payment_was_confirmed_is_a_logged_no_op(kind, caplog):
    """A lost race (another worker recorded the block first) changes nothing, for every kind."""
    [payment_id] = seen_payments(kind, 1)
    payment = kind.objects.get(pk=payment_id)
    assert payment.mark_accepted(PaymentState.CONFIRMED, "in block 7") == PaymentState.CONFIRMED

    assert payment.fail(PaymentState.DOUBLE_SPEND, "conflict", LocalLedger()) == PaymentState.CONFIRMED

    payment.refresh_from_db()
    assert (payment.state, payment.detail) == (PaymentState.CONFIRMED, "in block 7")
    assert Utxo.objects.filter(txid=payment.txid).exists()
    assert f"{kind.LOG_NAME}_fail_skipped {kind.LOG_NAME}={payment_id} state=confirmed" in caplog.text


@KINDS
def test_acceptance_after_a_failure_is_a_logged_no_op(kind, caplog):
    [payment_id] = seen_payments(kind, 1)
    payment = kind.objects.get(pk=payment_id)
    payment.fail(PaymentState.REJECTED, "mandatory-script-verify-flag-failed", LocalLedger())

    assert payment.mark_accepted(PaymentState.CONFIRMED, "in block 7") == PaymentState.REJECTED

    payment.refresh_from_db()
    assert payment.state == PaymentState.REJECTED
    assert f"{kind.LOG_NAME}_accept_skipped {kind.LOG_NAME}={payment_id} state=rejected" in caplog.text


def test_both_kinds_share_one_set_of_states():
    assert Settlement.State is CommunityPass.State is PaymentState
    assert Settlement._meta.get_field("state").choices == CommunityPass._meta.get_field("state").choices
