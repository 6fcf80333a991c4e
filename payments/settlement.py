"""Broadcasting signed settlements and following them to confirmation (or failure).

payments/signing.py signs and records payments; here they are sent (in bulk where the network
can take a batch), their replies recorded, refused ones undone (the hours are owed again), stuck
ones re-sent, and accepted ones followed until a block confirms them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from lib.backoff import schedule
from meters.models import Meter
from meters.usage import reopen_lines
from payments.models import Settlement, Utxo, Wallet
from payments.networks import BsvNetwork, NetworkUnavailable, Outcome, Reply
from payments.wallets import resync_quietly

log = logging.getLogger(__name__)

_FAILURES = {Outcome.REJECTED: Settlement.State.REJECTED, Outcome.DOUBLE_SPEND: Settlement.State.DOUBLE_SPEND}
FIRST_BACKOFF = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)


def broadcast_backoff(attempts: int) -> timedelta:
    """How long a signed settlement waits, after its signing or its last try, before the sweeper sends it again.

    1, 2, 4, ... minutes after 0, 1, 2, ... tries, at most an hour: a network that is down for a
    while is asked less and less often, and gets the payment within the hour once it is back. The
    first wait leaves a payment to the run that signed it, which sends it within seconds.
    """
    return schedule(attempts, first=FIRST_BACKOFF, cap=MAX_BACKOFF)


class _Moved(Exception):
    """Some settlements of a group had moved on meanwhile: record that group one by one instead."""


def send_settlements(settlement_ids: list[int], network: BsvNetwork) -> dict[int, str]:
    """Broadcast signed settlements and record what the network said; returns each one's state.

    broadcast_settlement for many:
    1. load the settlements (one query); one no longer signed is not sent again, its state is returned;
    2. ``network.broadcast_many`` where the network has it (the local ledger), else one by one;
    3. accepted: one UPDATE of those still signed to seen, one UPDATE of their coins to spent, together;
       confirmed already: mark_accepted; refused: fail_settlement, one by one (the rare paths);
       retry or unknown: they stay signed, with the detail, for the sweeper to send again.
    """
    rows = Settlement.objects.filter(pk__in=settlement_ids).values_list("pk", "state", "raw_tx")
    states, pending = {}, []
    for pk, state, raw_tx in rows:
        if state == Settlement.State.SIGNED:
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
            states[pk] = record_reply(pk, reply, network)
    for detail, ids in accepted.items():
        try:
            with transaction.atomic():
                moved = Settlement.objects.filter(pk__in=ids, state=Settlement.State.SIGNED).update(
                    state=Settlement.State.SEEN,
                    detail=detail,
                    confirmed_at=None,
                    broadcast_attempts=F("broadcast_attempts") + 1,
                    updated_at=timezone.now(),
                )
                if moved != len(ids):
                    raise _Moved
                Utxo.objects.filter(reserved_by_id__in=ids).update(state=Utxo.State.SPENT)
        except _Moved:
            # Another process moved some of them meanwhile (the sweeper): mark_accepted sorts each out.
            for pk in ids:
                states[pk] = record_reply(pk, Reply(Outcome.ACCEPTED, detail), network)
        else:
            states.update(dict.fromkeys(ids, Settlement.State.SEEN))
    return states


def _broadcast(raw_txs: list[str], network: BsvNetwork) -> list[Reply]:
    broadcast_many = getattr(network, "broadcast_many", None)
    if broadcast_many is not None:
        return broadcast_many(raw_txs)
    # One payment's bad luck must not leave the others unrecorded; the sweeper sends it again.
    return [send(raw_tx, network) for raw_tx in raw_txs]


def send(raw_tx: str, network: BsvNetwork) -> Reply:
    """Broadcast one payment (a settlement or a community pass); no answer is a RETRY reply, a try like any other."""
    try:
        return network.broadcast(raw_tx)
    except NetworkUnavailable as error:
        return Reply(Outcome.RETRY, str(error))


def broadcast_settlement(settlement_id: int, network: BsvNetwork) -> str:
    """Send one signed settlement and record what the network says; returns its state."""
    settlement = Settlement.objects.only("state", "raw_tx").get(pk=settlement_id)
    if settlement.state != Settlement.State.SIGNED:
        return settlement.state
    # No answer is a try like any other: counted, its reason shown, and the next one after the backoff.
    return record_reply(settlement_id, send(settlement.raw_tx, network), network)


def record_reply(settlement_id: int, reply: Reply, network: BsvNetwork) -> str:
    """Record what the network said to one broadcast of a settlement; returns the new state."""
    # updated_at (an update() leaves auto_now alone) is when the backoff before the next try starts.
    Settlement.objects.filter(pk=settlement_id).update(
        broadcast_attempts=F("broadcast_attempts") + 1, updated_at=timezone.now()
    )
    if reply.outcome in (Outcome.ACCEPTED, Outcome.CONFIRMED):
        state = Settlement.State.CONFIRMED if reply.outcome == Outcome.CONFIRMED else Settlement.State.SEEN
        return mark_accepted(settlement_id, state, reply.detail)
    if reply.outcome in _FAILURES:
        return fail_settlement(settlement_id, _FAILURES[reply.outcome], reply.detail, network)
    # RETRY / UNKNOWN: still signed; the sweeper sends it again.
    Settlement.objects.filter(pk=settlement_id).update(detail=reply.detail[:1000])
    log.warning("settlement_broadcast_retry settlement=%s detail=%s", settlement_id, reply.detail[:200])
    return Settlement.State.SIGNED


def mark_accepted(settlement_id: int, state: str, detail: str) -> str:
    with transaction.atomic():
        moved = Settlement.objects.filter(pk=settlement_id, state__in=Settlement.PENDING).update(
            state=state,
            detail=detail[:1000],
            confirmed_at=timezone.now() if state == Settlement.State.CONFIRMED else None,
        )
        if moved:
            Utxo.objects.filter(reserved_by_id=settlement_id).update(state=Utxo.State.SPENT)
            if state == Settlement.State.CONFIRMED:
                txid = Settlement.objects.values_list("txid", flat=True).get(pk=settlement_id)
                Utxo.objects.filter(txid=txid).update(confirmed=True)
    return Settlement.objects.values_list("state", flat=True).get(pk=settlement_id)


def fail_settlement(settlement_id: int, state: str, detail: str, network: BsvNetwork) -> str:
    """The network refused the payment: its usage is owed again and its coins are resynced."""
    household_id = Settlement.objects.values_list("household_id", flat=True).get(pk=settlement_id)
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(household_id=household_id)
        list(Meter.objects.select_for_update().filter(household_id=household_id).order_by("pk").values_list("pk"))
        settlement = Settlement.objects.select_for_update().get(pk=settlement_id)
        if settlement.state not in Settlement.PENDING:
            return settlement.state
        settlement.state, settlement.detail = state, detail[:1000]
        settlement.save(update_fields=["state", "detail", "updated_at"])
        live = settlement.lines.filter(released=False)
        usage_ids = list(live.values_list("usage_id", flat=True))
        live.update(released=True)
        reopen_lines(usage_ids)
        # Forget the coins it used and the change it made; the network says which still exist.
        Utxo.objects.filter(reserved_by=settlement).delete()
        Utxo.objects.filter(txid=settlement.txid).delete()
    log.error("settlement_failed settlement=%s state=%s detail=%s", settlement_id, state, detail[:200])
    resync_quietly(wallet, network)
    return state


def rebroadcast_signed(network: BsvNetwork, older_than: timedelta | None = None) -> int:
    """Send again settlements left ``signed`` (a crash, a network error) whose backoff has passed.

    Longest-waiting first, at most 1,000 a tick; a try moves a settlement to the back, so a backlog
    larger than that is worked through rather than the same thousand retried forever.
    ``older_than`` replaces the schedule with one wait for all ("send whatever is signed now").
    """
    ids = list(due_for_rebroadcast(timezone.now(), older_than).values_list("pk", flat=True)[:1000])
    send_settlements(ids, network)
    return len(ids)


def due_for_rebroadcast(now: datetime, older_than: timedelta | None = None, signed: QuerySet | None = None) -> QuerySet:
    """Signed payments whose ``broadcast_backoff(broadcast_attempts)`` has passed at ``now``, longest-waiting first.

    Settlements by default; ``signed`` may be any payments with ``broadcast_attempts`` and ``updated_at``
    (community passes). The wait counts from the signing or the last try (``updated_at``, which every
    try moves on). One query, served by the (state, updated_at) index: the shortest wait bounds the
    range scanned, then one condition per step of the schedule.
    """
    if signed is None:
        signed = Settlement.objects.filter(state=Settlement.State.SIGNED)
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


def refresh_pending(network: BsvNetwork) -> int:
    """Ask the network about settlements it has seen but not yet confirmed.

    The network is asked one by one (it has no batch status); the confirmations it reports are
    recorded together (_confirm), before any refusal is, so effects keep the order of the replies.
    """
    pending = (
        Settlement.objects.filter(state__in=[Settlement.State.SEEN, Settlement.State.BROADCAST])
        .order_by("updated_at")
        .values_list("pk", "txid", "raw_tx")[:1000]
    )
    confirmed, by_detail = 0, defaultdict(list)
    for settlement_id, txid, raw_tx in pending:
        try:
            reply = network.status(txid)
            if reply.outcome == Outcome.UNKNOWN:
                # Dropped from a mempool: sending it again is harmless and tells us whether it is still valid.
                reply = network.broadcast(raw_tx)
        except NetworkUnavailable as error:
            # The rest would fail alike; the next tick asks again, and nothing has changed meanwhile.
            log.warning("settlement_status_deferred settlement=%s detail=%s", settlement_id, error)
            break
        if reply.outcome == Outcome.CONFIRMED:
            by_detail[reply.detail[:1000]].append((settlement_id, txid))
            confirmed += 1
        elif reply.outcome in _FAILURES:
            _confirm(by_detail)  # a refusal resyncs a wallet: after the confirmations replied before it
            by_detail.clear()
            fail_settlement(settlement_id, _FAILURES[reply.outcome], reply.detail or "refused by the network", network)
    _confirm(by_detail)
    return confirmed


def _confirm(by_detail: dict[str, list[tuple[int, str]]]) -> None:
    """mark_accepted(..., CONFIRMED, detail) for many: one transaction of three UPDATEs per detail (a block).

    If some were moved meanwhile (refused, confirmed by another tick), that group is rolled back and
    marked one by one, which sorts each out.
    """
    for detail, rows in by_detail.items():
        ids = [settlement_id for settlement_id, _ in rows]
        try:
            with transaction.atomic():
                moved = Settlement.objects.filter(pk__in=ids, state__in=Settlement.PENDING).update(
                    state=Settlement.State.CONFIRMED, detail=detail, confirmed_at=timezone.now()
                )
                if moved != len(ids):
                    raise _Moved
                Utxo.objects.filter(reserved_by_id__in=ids).update(state=Utxo.State.SPENT)
                Utxo.objects.filter(txid__in=[txid for _, txid in rows]).update(confirmed=True)
        except _Moved:
            for settlement_id in ids:
                mark_accepted(settlement_id, Settlement.State.CONFIRMED, detail)
