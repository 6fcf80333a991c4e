"""Hourly settlement: pay each household's unsettled usage from its wallet to the utility, exactly once.

Money moves in two steps (shared/DESIGN.md, "Settlement"): ``settle_household`` signs a payment
and records it in one database transaction; ``broadcast_settlement`` sends it afterwards. A crash
between them leaves a ``signed`` settlement that ``rebroadcast_signed`` sends later: sending the
same raw transaction twice is harmless, so no path pays twice.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bsv import P2PKH, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone

from meters.models import HourlyUsage, Meter
from meters.timeutil import floor_hour
from meters.usage import reopen_lines
from payments import keys
from payments.checks import native_signing_available
from payments.models import Settlement, SettlementLine, Utxo, Wallet
from payments.money import eur_to_satoshis
from payments.networks import BsvNetwork, NetworkUnavailable, Outcome, Reply
from payments.prices import usable_quote
from payments.wallets import sync_coins

log = logging.getLogger(__name__)

_FAILURES = {Outcome.REJECTED: Settlement.State.REJECTED, Outcome.DOUBLE_SPEND: Settlement.State.DOUBLE_SPEND}
# P2PKH sizes in bytes, with a 73-byte signature: what a signed input and an output can take at most.
_INPUT_BYTES, _OUTPUT_BYTES, _OVERHEAD_BYTES = 149, 34, 10


@dataclass(frozen=True)
class Result:
    status: str  # signed | nothing | arrears | deferred
    settlement_id: int | None = None
    detail: str = ""


def closed_period_end(now: datetime) -> datetime:
    """End of the last hour that is closed, counting the grace for late readings (HH:05 by default)."""
    return floor_hour(now - timedelta(minutes=settings.SETTLEMENT_GRACE_MINUTES))


def settle_household(household_id: int, period_end: datetime, now: datetime) -> Result:
    """Sign one payment for everything the household owes for hours before ``period_end``.

    Steps, in one transaction holding the wallet's lock, then its meters' (lock order):
    1. a price quote no older than PRICE_MAX_AGE, or defer: never guess a price;
    2. the open, priced usage lines before ``period_end`` (earlier unpaid hours and adjustments too);
    3. EUR -> satoshis at the quote, half up; nothing to pay below one satoshi (it carries over);
    4. choose coins, confirmed first; too little money: arrears, nothing signed;
    5. build and sign (P2PKH to the utility, change back), store raw tx and txid as ``signed``,
       claim the lines and reserve the coins; commit. The caller broadcasts after that.
    """
    if not native_signing_available():
        log.error("settlement_deferred reason=no_native_secp256k1 household=%s", household_id)
        return Result("deferred", detail="bsv-sdk native secp256k1 extension missing")
    quote = usable_quote(now)
    if quote is None:
        log.error("settlement_deferred reason=price_too_old household=%s", household_id)
        return Result("deferred", detail=f"no BSV/EUR quote newer than {settings.PRICE_MAX_AGE}")
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(household_id=household_id)
        list(Meter.objects.select_for_update().filter(household_id=household_id).order_by("pk").values_list("pk"))
        lines = list(
            HourlyUsage.objects.filter(
                household_id=household_id, hour_start__lt=period_end, settled_at__isnull=True, cost_eur__isnull=False
            ).order_by("hour_start", "pk")
        )
        eur = sum((line.cost_eur for line in lines), start=0)
        satoshis = eur_to_satoshis(eur, quote.bsv_eur) if eur > 0 else 0
        if satoshis <= 0:
            return Result("nothing")
        payment = _sign_payment(wallet, satoshis)
        if payment is None:
            log.warning("settlement_arrears household=%s eur=%s satoshis=%d", household_id, eur, satoshis)
            return Result("arrears", detail=f"wallet cannot pay {satoshis} satoshis plus fee")
        tx, coins, fee = payment
        settlement = Settlement.objects.create(
            household_id=household_id,
            period_start=lines[0].hour_start,
            period_end=period_end,
            kwh=sum((line.kwh for line in lines), start=0),
            eur=eur,
            quote=quote,
            satoshis=satoshis,
            fee_satoshis=fee,
            txid=tx.txid(),
            raw_tx=tx.hex(),
        )
        SettlementLine.objects.bulk_create(
            SettlementLine(settlement=settlement, usage=line, eur=line.cost_eur) for line in lines
        )
        _claim(lines, coins, settlement, now)
        Utxo.objects.bulk_create(
            Utxo(wallet=wallet, txid=settlement.txid, vout=vout, satoshis=output.satoshis, raw_parent=settlement.raw_tx)
            for vout, output in enumerate(tx.outputs)
            if output.change
        )
    log.info(
        "settlement_signed household=%s settlement=%s eur=%s satoshis=%d fee=%d txid=%s",
        household_id,
        settlement.pk,
        eur,
        satoshis,
        fee,
        settlement.txid,
    )
    return Result("signed", settlement.pk)


def _claim(lines: list[HourlyUsage], coins: list[Utxo], settlement: Settlement, now: datetime) -> None:
    # Conditional updates: if anything was claimed meanwhile, roll back rather than pay twice.
    claimed = HourlyUsage.objects.filter(pk__in=[line.pk for line in lines], settled_at__isnull=True).update(
        settled_at=now
    )
    reserved = Utxo.objects.filter(pk__in=[coin.pk for coin in coins], state=Utxo.State.AVAILABLE).update(
        state=Utxo.State.RESERVED, reserved_by=settlement
    )
    if claimed != len(lines) or reserved != len(coins):
        raise DatabaseError(f"settlement {settlement.pk}: usage or coins were claimed concurrently")


def _sign_payment(wallet: Wallet, satoshis: int) -> tuple[Transaction, list[Utxo], int] | None:
    # Spendable: confirmed coins, or change of our own payments the network has accepted. Never an
    # unconfirmed deposit (a low-fee parent can pin the chain for good) nor change of a payment not
    # yet accepted (the child would reach the network before its parent). Confirmed first (the
    # unconfirmed chain stays short), larger first (fewer inputs).
    accepted = Settlement.objects.filter(state__in=[Settlement.State.SEEN, Settlement.State.CONFIRMED])
    spendable = wallet.utxos.filter(state=Utxo.State.AVAILABLE).filter(
        Q(confirmed=True) | Q(txid__in=accepted.filter(household_id=wallet.household_id).values("txid"))
    )
    return sign_from_coins(wallet, satoshis, spendable.order_by("-confirmed", "-satoshis", "pk"))


def sign_from_coins(
    wallet: Wallet, satoshis: int, spendable: Iterable[Utxo]
) -> tuple[Transaction, list[Utxo], int] | None:
    """Sign a payment of ``satoshis`` with the fewest leading coins of ``spendable`` that cover it and its fee.

    ``spendable`` comes in order of preference; None if all of it cannot pay. No query of its own:
    payments/batch.py loads the coins of many wallets at once and signs each payment with this.
    """
    rate = settings.FEE_SATS_PER_KB
    chosen, total = [], 0
    for coin in spendable:
        chosen.append(coin)
        total += coin.satoshis
        if total >= satoshis + _fee_for(len(chosen), 2, rate):
            break
    else:
        return None
    key = keys.household_key(wallet.derivation_index)
    parents: dict[str, Transaction] = {}
    tx = Transaction()
    for coin in chosen:
        parent = parents.setdefault(coin.txid, Transaction.from_hex(coin.raw_parent))
        tx.add_input(
            TransactionInput(
                source_transaction=parent, source_output_index=coin.vout, unlocking_script_template=P2PKH().unlock(key)
            )
        )
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(keys.utility_address()), satoshis=satoshis))
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(wallet.address), change=True))
    tx.fee(SatoshisPerKilobyte(rate))  # drops the change output when nothing is left for it
    tx.sign()
    fee = total - sum(output.satoshis for output in tx.outputs)
    if fee < math.ceil(len(tx.serialize()) * rate / 1000):
        return None
    return tx, chosen, fee


def _fee_for(inputs: int, outputs: int, rate: int) -> int:
    return math.ceil((_OVERHEAD_BYTES + inputs * _INPUT_BYTES + outputs * _OUTPUT_BYTES) * rate / 1000)


def broadcast_settlement(settlement_id: int, network: BsvNetwork) -> str:
    """Send a signed settlement and record what the network says; returns the new state."""
    settlement = Settlement.objects.get(pk=settlement_id)
    if settlement.state != Settlement.State.SIGNED:
        return settlement.state
    return record_reply(settlement_id, network.broadcast(settlement.raw_tx), network)


def record_reply(settlement_id: int, reply: Reply, network: BsvNetwork) -> str:
    """Record what the network said to one broadcast of a settlement; returns the new state."""
    Settlement.objects.filter(pk=settlement_id).update(broadcast_attempts=F("broadcast_attempts") + 1)
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
                Utxo.objects.filter(txid=Settlement.objects.get(pk=settlement_id).txid).update(confirmed=True)
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
    try:
        sync_coins(wallet, network)
    except NetworkUnavailable as error:
        # The coins come back with the next sync (before the next arrears retry); nothing is lost.
        log.warning("coin_sync_deferred wallet=%s detail=%s", wallet.pk, error)
    return state


def rebroadcast_signed(network: BsvNetwork, older_than: timedelta = timedelta(minutes=2)) -> int:
    """Send again settlements left ``signed`` (a crash, a network error). Oldest first."""
    stale = Settlement.objects.filter(state=Settlement.State.SIGNED, created_at__lt=timezone.now() - older_than)
    ids = list(stale.order_by("created_at").values_list("pk", flat=True)[:1000])
    for settlement_id in ids:
        broadcast_settlement(settlement_id, network)
    return len(ids)


def refresh_pending(network: BsvNetwork) -> int:
    """Ask the network about settlements it has seen but not yet confirmed."""
    ids = list(
        Settlement.objects.filter(state__in=[Settlement.State.SEEN, Settlement.State.BROADCAST])
        .order_by("updated_at")
        .values_list("pk", flat=True)[:1000]
    )
    confirmed = 0
    for settlement_id in ids:
        settlement = Settlement.objects.only("txid", "raw_tx").get(pk=settlement_id)
        reply = network.status(settlement.txid)
        if reply.outcome == Outcome.UNKNOWN:
            # Dropped from a mempool: sending it again is harmless and tells us whether it is still valid.
            reply = network.broadcast(settlement.raw_tx)
        if reply.outcome == Outcome.CONFIRMED:
            mark_accepted(settlement_id, Settlement.State.CONFIRMED, reply.detail)
            confirmed += 1
        elif reply.outcome in _FAILURES:
            fail_settlement(settlement_id, _FAILURES[reply.outcome], reply.detail or "refused by the network", network)
    return confirmed
