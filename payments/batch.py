"""Hourly settlement of a chunk of households at once: settle_household's payments in a few statements.

``settle_household`` (payments/settlement.py) stays the reference and the fallback. ``settle_many``
signs exactly the payment it would sign for each household of a chunk (signing is deterministic:
same coins, same amounts, same txids), but it reads and writes the whole chunk with one statement
per step, in one database transaction. ``send_settlements`` then broadcasts what was signed
(``broadcast_many`` where the network has one) and records the replies in bulk.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, F, OuterRef, Q, Subquery

from meters.models import HourlyUsage, Meter
from payments.checks import native_signing_available
from payments.models import PriceQuote, Settlement, SettlementLine, Utxo, Wallet
from payments.money import eur_to_satoshis
from payments.networks import BsvNetwork, NetworkUnavailable, Outcome, Reply
from payments.prices import usable_quote
from payments.settlement import Result, record_reply, sign_from_coins

log = logging.getLogger(__name__)


@dataclass
class _Payment:
    """One household's signed payment, before it is recorded: the transaction as text, not as objects.

    A chunk keeps hundreds of these alive; without each transaction's object graph (parents,
    scripts, key templates) far fewer objects outlive a young collection, and the garbage
    collector rescans the whole heap less often.
    """

    wallet: Wallet
    lines: list  # named rows of pk, household_id, hour_start, kwh, cost_eur; oldest first
    eur: Decimal
    satoshis: int
    coins: list[Utxo]
    fee: int
    txid: str
    raw_tx: str
    change: list[tuple[int, int]]  # (vout, satoshis) of the outputs back to the wallet
    settlement: Settlement | None = None


def settle_many(household_ids: Iterable[int], period_end: datetime, now: datetime) -> dict[int, Result]:
    """Sign one payment per household of the chunk for everything it owes for hours before ``period_end``.

    What settle_household does for each household, for all of them in one transaction:
    1. native signing and a fresh quote (one lookup), or every household is deferred: never guess a price;
    2. lock every wallet of the chunk, then all their households' meters, each in pk order (lock order;
       two runs over overlapping chunks wait on each other, they never deadlock);
    3. one query for every open, priced usage line before ``period_end``; one for every spendable coin;
    4. per household, in Python: EUR -> satoshis (nothing below one satoshi), choose coins and sign
       (``sign_from_coins``, the code settle_household signs with); too little money: arrears;
    5. insert the settlements, their lines and their change coins; claim every line and reserve every
       coin with one conditional UPDATE each. A count short means another run claimed something
       meanwhile: DatabaseError, and the whole chunk rolls back. The caller broadcasts after commit.

    Households without a wallet are left out of the result; settle_household is the reference for them.
    """
    ids = sorted(set(household_ids))
    if not native_signing_available():
        log.error("settlement_deferred reason=no_native_secp256k1 households=%d", len(ids))
        return {h: Result("deferred", detail="bsv-sdk native secp256k1 extension missing") for h in ids}
    quote = usable_quote(now)
    if quote is None:
        log.error("settlement_deferred reason=price_too_old households=%d", len(ids))
        return {h: Result("deferred", detail=f"no BSV/EUR quote newer than {settings.PRICE_MAX_AGE}") for h in ids}
    results: dict[int, Result] = {}
    with transaction.atomic():
        wallets = list(Wallet.objects.select_for_update().filter(household_id__in=ids).order_by("pk"))
        households = [wallet.household_id for wallet in wallets]
        list(Meter.objects.select_for_update().filter(household_id__in=households).order_by("pk").values_list("pk"))
        lines = defaultdict(list)
        open_lines = HourlyUsage.objects.filter(
            household_id__in=households, hour_start__lt=period_end, settled_at__isnull=True, cost_eur__isnull=False
        )
        for line in open_lines.order_by("household_id", "hour_start", "pk").values_list(
            "pk", "household_id", "hour_start", "kwh", "cost_eur", named=True
        ):
            lines[line.household_id].append(line)
        coins = _spendable_coins(wallets)
        payments = []
        for wallet in wallets:
            signed = _sign(wallet, lines.get(wallet.household_id, []), quote, coins.get(wallet.pk, []))
            if isinstance(signed, Result):
                results[wallet.household_id] = signed
            else:
                payments.append(signed)
        if payments:
            _record(payments, quote, period_end, now)
    for payment in payments:
        settlement = payment.settlement
        log.info(
            "settlement_signed household=%s settlement=%s eur=%s satoshis=%d fee=%d txid=%s",
            settlement.household_id,
            settlement.pk,
            payment.eur,
            payment.satoshis,
            payment.fee,
            settlement.txid,
        )
        results[settlement.household_id] = Result("signed", settlement.pk)
    return results


def _sign(wallet: Wallet, lines: list, quote: PriceQuote, coins: list[Utxo]) -> _Payment | Result:
    """settle_household's steps 3 and 4 for one household, on rows already loaded."""
    eur = sum((line.cost_eur for line in lines), start=0)
    satoshis = eur_to_satoshis(eur, quote.bsv_eur) if eur > 0 else 0
    if satoshis <= 0:
        return Result("nothing")
    signed = sign_from_coins(wallet, satoshis, coins)
    if signed is None:
        log.warning("settlement_arrears household=%s eur=%s satoshis=%d", wallet.household_id, eur, satoshis)
        return Result("arrears", detail=f"wallet cannot pay {satoshis} satoshis plus fee")
    tx, coins, fee = signed
    change = [(vout, output.satoshis) for vout, output in enumerate(tx.outputs) if output.change]
    return _Payment(wallet, lines, eur, satoshis, coins, fee, tx.txid(), tx.hex(), change)


def _spendable_coins(wallets: list[Wallet]) -> dict[int, list[Utxo]]:
    """Each wallet's spendable coins in order of preference: the rule of settlement._sign_payment, for all at once.

    Confirmed coins, or change of the household's own payments the network has accepted; confirmed
    first, larger first. The accepted-change test matters only for unconfirmed coins; it repeats the
    condition of the partial unique index on txid, so PostgreSQL may look each one up through it.
    """
    accepted = Settlement.objects.filter(
        ~Q(state__in=Settlement.FAILED),
        state__in=[Settlement.State.SEEN, Settlement.State.CONFIRMED],
        txid=OuterRef("txid"),
        household__wallet=OuterRef("wallet_id"),
    )
    spendable = (
        Utxo.objects.filter(wallet_id__in=[wallet.pk for wallet in wallets], state=Utxo.State.AVAILABLE)
        .filter(Q(confirmed=True) | Exists(accepted))
        .order_by("wallet_id", "-confirmed", "-satoshis", "pk")
    )
    by_wallet = defaultdict(list)
    for coin in spendable:
        by_wallet[coin.wallet_id].append(coin)
    return by_wallet


def _record(payments: list[_Payment], quote: PriceQuote, period_end: datetime, now: datetime) -> None:
    """Insert the settlements and their lines, claim lines and coins, add the change: settle_household's writes."""
    settlements = Settlement.objects.bulk_create(
        Settlement(
            household_id=payment.wallet.household_id,
            period_start=payment.lines[0].hour_start,
            period_end=period_end,
            kwh=sum((line.kwh for line in payment.lines), start=0),
            eur=payment.eur,
            quote_id=quote.pk,
            satoshis=payment.satoshis,
            fee_satoshis=payment.fee,
            txid=payment.txid,
            raw_tx=payment.raw_tx,
        )
        for payment in payments
    )
    for payment, settlement in zip(payments, settlements, strict=True):
        payment.settlement = settlement
    SettlementLine.objects.bulk_create(
        SettlementLine(settlement_id=payment.settlement.pk, usage_id=line.pk, eur=line.cost_eur)
        for payment in payments
        for line in payment.lines
    )
    # Conditional updates, as in settlement._claim: anything claimed meanwhile rolls the chunk back.
    line_ids = [line.pk for payment in payments for line in payment.lines]
    claimed = HourlyUsage.objects.filter(pk__in=line_ids, settled_at__isnull=True).update(settled_at=now)
    coin_ids = [coin.pk for payment in payments for coin in payment.coins]
    # Each coin goes to its own household's one new settlement (a CASE with a branch per settlement
    # costs Django a filter to build per branch; this subquery is one).
    owner = (
        Settlement.objects.filter(
            pk__in=[payment.settlement.pk for payment in payments], household__wallet=OuterRef("wallet_id")
        )
        .order_by()
        .values("pk")
    )
    reserved = Utxo.objects.filter(pk__in=coin_ids, state=Utxo.State.AVAILABLE).update(
        state=Utxo.State.RESERVED, reserved_by_id=Subquery(owner)
    )
    if claimed != len(line_ids) or reserved != len(coin_ids):
        raise DatabaseError(
            f"settling {len(payments)} households: {len(line_ids) - claimed} usage lines and "
            f"{len(coin_ids) - reserved} coins were claimed concurrently"
        )
    Utxo.objects.bulk_create(
        Utxo(wallet_id=payment.wallet.pk, txid=payment.txid, vout=vout, satoshis=satoshis, raw_parent=payment.raw_tx)
        for payment in payments
        for vout, satoshis in payment.change
    )


class _Moved(Exception):
    """Some accepted settlements were no longer signed: record that group one by one instead."""


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
    replies = []
    for raw_tx in raw_txs:
        try:
            replies.append(network.broadcast(raw_tx))
        except NetworkUnavailable as error:
            # One payment's bad luck must not leave the others unrecorded; the sweeper sends it again.
            replies.append(Reply(Outcome.RETRY, str(error)))
    return replies
