"""Sending outgoing payments and following them to a block (or their failure), for every kind.

payments/settlement.py signs and records settlements, payments/passes.py community passes; here
they are sent (in bulk where the network takes a batch), the replies recorded through the payment's
own lifecycle (payments.models.OutgoingPayment: record_reply, mark_accepted, fail), signed ones
left behind (a crash, no answer) swept up after a backoff, and accepted ones asked about until a
block confirms them. ``kind`` is the payment's model: Settlement or CommunityPass.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from lib.backoff import schedule
from payments import bulk
from payments.models import REFUSALS, OutgoingPayment, PaymentState, Settlement
from payments.networks import BsvNetwork, NetworkUnavailable, Outcome, Reply

log = logging.getLogger(__name__)

FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
SWEEP_BATCH = 1000  # payments a tick sends again, or asks about, at most

Kind = type[OutgoingPayment]


def broadcast_backoff(attempts: int) -> timedelta:
    """How long a signed payment waits, after its signing or its last try, before the sweeper sends it again.

    1, 2, 4, ... minutes after 0, 1, 2, ... tries, at most an hour: a network that is down for a
    while is asked less and less often, and gets the payment within the hour once it is back. The
    first wait leaves a payment to the run that signed it, which sends it within seconds.
    """
    return schedule(attempts, first=FIRST_BACKOFF, cap=MAX_BACKOFF)


class _Moved(Exception):
    """Some payments of a group had moved on meanwhile: record that group one by one instead."""


def send(raw_tx: str, network: BsvNetwork) -> Reply:
    """Broadcast one raw transaction; no answer is a RETRY reply, a try like any other."""
    try:
        return network.broadcast(raw_tx)
    except NetworkUnavailable as error:
        return Reply(Outcome.RETRY, str(error))


def send_one(kind: Kind, payment_id: int, network: BsvNetwork) -> str:
    """Send one signed payment and record what the network says; returns its state ("" if there is none)."""
    payment = kind.objects.filter(pk=payment_id).only("state", "txid", "raw_tx").first()
    if payment is None or payment.state != PaymentState.SIGNED:
        return payment.state if payment else ""
    return payment.record_reply(send(payment.raw_tx, network), network)


def send_many(kind: Kind, payment_ids: list[int], network: BsvNetwork) -> dict[int, str]:
    """Broadcast signed payments and record what the network said; returns each one's state.

    send_one for many:
    1. load the payments (one query, rows rather than instances); one no longer signed is not sent
       again, its state is returned;
    2. ``network.broadcast_many`` where the network has it (the local ledger), else one by one;
    3. accepted: one transaction per reply text that moves those still signed to seen and spends
       their coins (``accept_locked``); refused, confirmed already, no answer: ``record_reply``, one by
       one (the rare paths; no answer leaves it signed for the sweeper).
    """
    rows = kind.objects.filter(bulk.among("pk", payment_ids)).order_by().values_list("pk", "state", "raw_tx")
    states, pending = {}, []
    for pk, state, raw_tx in rows:
        if state == PaymentState.SIGNED:
            pending.append((pk, raw_tx))
        else:
            states[pk] = state
    if not pending:
        return states
    replies = _broadcast([raw_tx for _, raw_tx in pending], network)
    accepted = defaultdict(list)
    for (pk, _), reply in zip(pending, replies, strict=True):
        if reply.outcome == Outcome.ACCEPTED:
            accepted[reply.detail[:1000]].append(pk)
        else:
            states[pk] = _record_one(kind, pk, reply, network)
    for detail, ids in accepted.items():
        try:
            with transaction.atomic():
                moved = kind.accept_locked(ids, PaymentState.SEEN, detail, was=[PaymentState.SIGNED], counted_try=True)
                if moved != len(ids):
                    raise _Moved
        except _Moved:
            # Another process moved some of them meanwhile (the sweeper): record_reply sorts each out.
            for pk in ids:
                states[pk] = _record_one(kind, pk, Reply(Outcome.ACCEPTED, detail), network)
        else:
            states.update(dict.fromkeys(ids, PaymentState.SEEN))
    return states


def _record_one(kind: Kind, payment_id: int, reply: Reply, network: BsvNetwork) -> str:
    """``record_reply`` for one payment of a batch (the rare paths: refused, confirmed, no answer, raced)."""
    payment = kind.objects.filter(pk=payment_id).only("state", "txid", "raw_tx").first()
    return payment.record_reply(reply, network) if payment is not None else ""


def _broadcast(raw_txs: list[str], network: BsvNetwork) -> list[Reply]:
    broadcast_many = getattr(network, "broadcast_many", None)
    if broadcast_many is not None:
        return broadcast_many(raw_txs)
    # One payment's bad luck must not leave the others unrecorded; the sweeper sends it again.
    return [send(raw_tx, network) for raw_tx in raw_txs]


def sweep_signed(kind: Kind, network: BsvNetwork, older_than: timedelta | None = None) -> int:
    """Send again payments left ``signed`` (a crash, a network error) whose backoff has passed.

    First the kind drops signed rows that are no payment to send (``abandon_stale``: a machine's
    claim whose request died). Longest-waiting first, at most SWEEP_BATCH a tick; a try moves a
    payment to the back, so a larger backlog is worked through rather than the same ones retried
    forever. ``older_than`` replaces the schedule with one wait for all ("send whatever is signed now").
    """
    now = timezone.now()
    kind.abandon_stale(now)
    due = due_for_rebroadcast(now, older_than, kind.sweepable(now))
    ids = list(due.values_list("pk", flat=True)[:SWEEP_BATCH])
    send_many(kind, ids, network)
    return len(ids)


def due_for_rebroadcast(now: datetime, older_than: timedelta | None = None, signed: QuerySet | None = None) -> QuerySet:
    """Signed payments whose ``broadcast_backoff(broadcast_attempts)`` has passed at ``now``, longest-waiting first.

    Settlements by default; ``signed`` may be any kind's (``kind.sweepable(now)``). The wait counts
    from the signing or the last try (``updated_at``, which every try moves on). One query, served
    by the (state, updated_at) index: the shortest wait bounds the range scanned, then one
    condition per step of the schedule.
    """
    if signed is None:
        signed = Settlement.objects.filter(state=PaymentState.SIGNED)
    if older_than is not None:
        due = signed.filter(updated_at__lte=now - older_than)
    else:
        steps, attempts = Q(), 0
        while (wait := broadcast_backoff(attempts)) < MAX_BACKOFF:
            steps |= Q(broadcast_attempts=attempts, updated_at__lte=now - wait)
            attempts += 1
        steps |= Q(broadcast_attempts__gte=attempts, updated_at__lte=now - MAX_BACKOFF)
        due = signed.filter(steps, updated_at__lte=now - broadcast_backoff(0))
    return due.order_by("updated_at", "pk")


def refresh_pending(kind: Kind, network: BsvNetwork) -> int:
    """Ask the network about payments it has (or may have) but no block yet; returns how many are confirmed.

    The network is asked one by one (it has no batch status). A transaction it does not know was
    dropped from a mempool (or never arrived, a machine's claim whose answer was lost): sending it
    again is harmless and says whether it is still valid. No answer stops the tick: the rest would
    fail alike, and the next tick asks again. What it reports is recorded in groups
    (``_accept``), each group before any refusal that came after it, so effects keep the order of
    the replies (a refusal resyncs a wallet).
    """
    pending = (
        kind.objects.filter(state__in=[PaymentState.SEEN, PaymentState.BROADCAST])
        .order_by("updated_at", "pk")
        .only("state", "txid", "raw_tx")[:SWEEP_BATCH]
    )
    confirmed, groups = 0, defaultdict(list)
    for payment in pending:
        try:
            reply = network.status(payment.txid)
            if reply.outcome == Outcome.UNKNOWN:
                reply = network.broadcast(payment.raw_tx)
        except NetworkUnavailable as error:
            log.warning("payment_status_deferred %s=%s detail=%s", kind.LOG_NAME, payment.pk, error)
            break
        if reply.outcome == Outcome.CONFIRMED:
            groups[PaymentState.CONFIRMED, reply.detail[:1000]].append(payment)
            confirmed += 1
        elif reply.outcome == Outcome.ACCEPTED and payment.state == PaymentState.BROADCAST:
            groups[PaymentState.SEEN, reply.detail[:1000]].append(payment)  # a machine's claim whose answer was lost
        elif reply.outcome in REFUSALS:
            _accept(kind, groups)
            groups.clear()
            payment.refuse(reply, network)  # a copy another worker sent meanwhile leaves it accepted
    _accept(kind, groups)
    return confirmed


def _accept(kind: Kind, groups: dict[tuple[str, str], list[OutgoingPayment]]) -> None:
    """mark_accepted for many: one transaction per (state, reply text), a block's confirmations in one.

    If some were moved meanwhile (refused, confirmed by another tick), that group is rolled back and
    marked one by one, which sorts each out.
    """
    for (state, detail), group in groups.items():
        try:
            with transaction.atomic():
                if kind.accept_locked([payment.pk for payment in group], state, detail) != len(group):
                    raise _Moved
        except _Moved:
            for payment in group:
                payment.mark_accepted(state, detail)
