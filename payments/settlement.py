"""Settling: each household's unsettled usage, paid from its wallet, exactly once.

Money moves in two steps (docs/architecture.md, "The money path"): this module chooses coins, builds
and signs the payments and records them in one database transaction, a chunk of households at a time;
payments/broadcast.py then sends them. A crash between the two leaves ``signed`` settlements that the
sweeper sends later: sending the same raw transaction twice is harmless, so no path pays twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bsv import P2PKH, Transaction, TransactionInput, TransactionOutput
from bsv.fee_models import SatoshisPerKilobyte
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef, Q, Subquery

from lib.money import eur_to_satoshis
from meters.models import HourlyUsage, Meter
from payments import keys
from payments.checks import native_signing_available
from payments.figures import line_amount, owed, usable_quote
from payments.models import PriceQuote, Settlement, SettlementLine, Utxo, Wallet

log = logging.getLogger(__name__)

# P2PKH sizes in bytes, with a 73-byte signature: what a signed input and an output can take at most.
_INPUT_BYTES, _OUTPUT_BYTES, _OVERHEAD_BYTES = 149, 34, 10


@dataclass(frozen=True)
class Result:
    status: str  # signed | nothing | arrears | deferred
    settlement_id: int | None = None
    detail: str = ""


@dataclass
class _Payment:
    """One household's signed payment, before it is recorded: the transaction as text, not as objects.

    A chunk keeps hundreds of these alive; without each transaction's object graph (parents,
    scripts, key templates) far fewer objects outlive a young collection, and the garbage
    collector rescans the whole heap less often.
    """

    wallet: Wallet
    lines: list  # named rows of pk, household_id, hour_start, kwh, amount (cost and taxes); oldest first
    eur: Decimal
    satoshis: int
    coins: list[Utxo]
    fee: int
    txid: str
    raw_tx: str
    change: list[tuple[int, int]]  # (vout, satoshis) of the outputs back to the wallet
    settlement: Settlement | None = None


def settle_household(household_id: int, period_end: datetime, now: datetime) -> Result:
    """settle_many for one household (staff's "retry now", the fallback of a chunk that raced)."""
    results = settle_many([household_id], period_end, now)
    if household_id not in results:
        raise Wallet.DoesNotExist(f"household {household_id} has no wallet")
    return results[household_id]


def settle_many(household_ids: Iterable[int], period_end: datetime, now: datetime) -> dict[int, Result]:
    """Sign one payment per household of the chunk for everything it owes for hours before ``period_end``.

    For all of them in one transaction:
    1. native signing and a fresh quote (one lookup), or every household is deferred: never guess a price;
    2. lock every wallet of the chunk, then all their households' meters, each in pk order (lock order;
       two runs over overlapping chunks wait on each other, they never deadlock);
    3. one query for every open, priced usage line before ``period_end``; one for every spendable coin;
    4. per household, in Python: EUR -> satoshis (nothing below one satoshi), choose coins and sign
       (``sign_from_coins``, the code settle_household signs with); too little money: arrears;
    5. insert the settlements, their lines and their change coins; claim every line and reserve every
       coin with one conditional UPDATE each. A count short means another run claimed something
       meanwhile: DatabaseError, and the whole chunk rolls back. The caller broadcasts after commit.

    Households without a wallet are left out of the result.
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
        open_lines = HourlyUsage.objects.filter(owed(before=period_end), household_id__in=households)
        for line in (
            open_lines.order_by("household_id", "hour_start", "pk")
            .annotate(amount=line_amount())
            .values_list("pk", "household_id", "hour_start", "kwh", "amount", named=True)
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
    """Steps 4 and 5 for one household, on rows already loaded."""
    eur = sum((line.amount for line in lines), start=0)
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
    """Each wallet's spendable coins, in order of preference.

    Confirmed coins, or change of the household's own payments the network has accepted. Never an
    unconfirmed deposit (a low-fee parent can pin the chain for good) nor change of a payment not
    yet accepted (the child would reach the network before its parent). Confirmed first (the
    unconfirmed chain stays short), larger first (fewer inputs). The accepted-change test matters
    only for unconfirmed coins; it repeats the condition of the partial unique index on txid, so
    PostgreSQL may look each one up through it.
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
    """Insert the settlements and their lines, claim lines and coins, add the change."""
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
        SettlementLine(
            settlement_id=payment.settlement.pk, usage_id=line.pk, household_id=line.household_id, eur=line.amount
        )
        for payment in payments
        for line in payment.lines
    )
    # Conditional updates: anything claimed meanwhile rolls the chunk back rather than pay twice.
    line_ids = [line.pk for payment in payments for line in payment.lines]
    # The lines' hours bound the UPDATE, so PostgreSQL reads only those partitions of the ledger.
    first_hour = min((line.hour_start for payment in payments for line in payment.lines), default=period_end)
    claimed = HourlyUsage.objects.filter(
        pk__in=line_ids, hour_start__gte=first_hour, hour_start__lt=period_end, settled_at__isnull=True
    ).update(settled_at=now)
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


def sign_from_coins(
    wallet: Wallet, satoshis: int, spendable: Iterable[Utxo]
) -> tuple[Transaction, list[Utxo], int] | None:
    """Sign a payment of ``satoshis`` with the fewest leading coins of ``spendable`` that cover it and its fee.

    ``spendable`` comes in order of preference; None if all of it cannot pay.
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
    if fee < _ceil_div(len(tx.serialize()) * rate, 1000):
        return None
    return tx, chosen, fee


def _fee_for(inputs: int, outputs: int, rate: int) -> int:
    return _ceil_div((_OVERHEAD_BYTES + inputs * _INPUT_BYTES + outputs * _OUTPUT_BYTES) * rate, 1000)


def _ceil_div(numerator: int, denominator: int) -> int:
    # Satoshis stay integers: no float on the way to a fee.
    return -(-numerator // denominator)
