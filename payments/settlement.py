"""Settling: each household's unsettled usage, paid from its wallet, exactly once.

Money moves in two steps (docs/architecture.md, "The money path"): this module chooses coins, builds
and signs the payments and records them in one database transaction, a chunk of households at a time;
payments/broadcast.py then sends them. A crash between the two leaves ``signed`` settlements that the
sweeper sends later: sending the same raw transaction twice is harmless, so no path pays twice.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from bsv import PrivateKey, Script, Transaction
from bsv.hash import hash160
from bsv.script.unlocking_template import UnlockingScriptTemplate
from bsv.utils import encode_pushdata
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q

from lib.money import eur_to_satoshis
from meters.models import HourlyUsage, Meter
from payments import bulk, keys, p2pkh
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

    wallet: Any  # a row of _WALLET_FIELDS
    lines: list  # rows of _LINE_FIELDS; oldest first
    eur: Decimal
    satoshis: int
    coins: list  # rows of _COIN_FIELDS
    fee: int
    txid: str
    raw_tx: str
    change: list[tuple[int, int]]  # (vout, satoshis) of the outputs back to the wallet
    settlement_id: int | None = None


_WALLET_FIELDS = ("pk", "household_id", "derivation_index", "address", "public_key")
_LINE_FIELDS = ("pk", "household_id", "hour_start", "kwh", "amount")  # amount: line_amount(), cost and taxes
_COIN_FIELDS = ("pk", "wallet_id", "txid", "vout", "satoshis", "raw_parent")
_SETTLEMENT_FIELDS = (
    "household_id",
    "period_start",
    "period_end",
    "kwh",
    "eur",
    "quote_id",
    "satoshis",
    "fee_satoshis",
    "txid",
    "raw_tx",
)


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
    3. one query for every open, priced usage line before ``period_end``; one for every spendable coin
       (rows as tuples: no model instance per line or coin);
    4. per household, in Python: EUR -> satoshis (nothing below one satoshi), choose coins and sign
       (``sign_from_coins``, the code settle_household signs with); too little money: arrears;
    5. insert the settlements, their lines and their change coins (payments.bulk: COPY on
       PostgreSQL); claim every line and reserve every coin with one conditional UPDATE each. A count
       short means another run claimed something meanwhile: DatabaseError, and the whole chunk rolls
       back. The caller broadcasts after commit.

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
        locked = Wallet.objects.select_for_update().filter(bulk.among("household_id", ids)).order_by("pk")
        wallets = list(locked.values_list(*_WALLET_FIELDS, named=True))
        households = [wallet.household_id for wallet in wallets]
        meters = Meter.objects.select_for_update().filter(bulk.among("household_id", households))
        list(meters.order_by("pk").values_list("pk"))
        lines = defaultdict(list)
        open_lines = HourlyUsage.objects.filter(owed(before=period_end), bulk.among("household_id", households))
        for line in (
            open_lines.annotate(amount=line_amount())
            .order_by("household_id", "hour_start", "pk")
            .values_list(*_LINE_FIELDS, named=True)
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
        log.info(
            "settlement_signed household=%s settlement=%s eur=%s satoshis=%d fee=%d txid=%s",
            payment.wallet.household_id,
            payment.settlement_id,
            payment.eur,
            payment.satoshis,
            payment.fee,
            payment.txid,
        )
        results[payment.wallet.household_id] = Result("signed", payment.settlement_id)
    return results


def _sign(wallet, lines: list, quote: PriceQuote, coins: list) -> _Payment | Result:
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


def _spendable_coins(wallets: Sequence) -> dict[int, list]:
    """Each wallet's spendable coins, in order of preference, as rows of _COIN_FIELDS.

    Confirmed coins, or change of the household's own payments the network has accepted. Never an
    unconfirmed deposit (a low-fee parent can pin the chain for good) nor change of a payment not
    yet accepted (the child would reach the network before its parent). Confirmed first (the
    unconfirmed chain stays short), larger first (fewer inputs).

    Two queries: the wallets' available coins, then, for the unconfirmed ones only, which of their
    transactions are the households' accepted payments (looked up by txid). One query with the test
    as a correlated EXISTS let PostgreSQL hash every accepted settlement ever made instead, whenever
    its statistics thought them few (measured: 80 ms a chunk at 10,000 settlements, growing).
    """
    available = (
        Utxo.objects.filter(bulk.among("wallet_id", [wallet.pk for wallet in wallets]), state=Utxo.State.AVAILABLE)
        .order_by("wallet_id", "-confirmed", "-satoshis", "pk")
        .values_list(*_COIN_FIELDS, "confirmed", named=True)
    )
    coins = list(available)
    unconfirmed = {coin.txid for coin in coins if not coin.confirmed}
    accepted: set[tuple[str, int]] = set()
    if unconfirmed:
        # The partial unique index on live txids serves this when the query repeats its condition.
        payments = Settlement.objects.filter(
            ~Q(state__in=Settlement.FAILED),
            bulk.among("txid", unconfirmed),
            state__in=[Settlement.State.SEEN, Settlement.State.CONFIRMED],
        )
        accepted = set(payments.values_list("txid", "household_id"))
    household_of = {wallet.pk: wallet.household_id for wallet in wallets}
    by_wallet = defaultdict(list)
    for coin in coins:
        if coin.confirmed or (coin.txid, household_of[coin.wallet_id]) in accepted:
            by_wallet[coin.wallet_id].append(coin)
    return by_wallet


def _record(payments: list[_Payment], quote: PriceQuote, period_end: datetime, now: datetime) -> None:
    """Insert the settlements and their lines, claim lines and coins, add the change."""
    settlement_ids = bulk.insert(
        Settlement,
        _SETTLEMENT_FIELDS,
        [
            (
                payment.wallet.household_id,
                payment.lines[0].hour_start,
                period_end,
                sum((line.kwh for line in payment.lines), start=0),
                payment.eur,
                quote.pk,
                payment.satoshis,
                payment.fee,
                payment.txid,
                payment.raw_tx,
            )
            for payment in payments
        ],
        ids=True,
    )
    for payment, settlement_id in zip(payments, settlement_ids, strict=True):
        payment.settlement_id = settlement_id
    bulk.insert(
        SettlementLine,
        ("settlement_id", "usage_id", "household_id", "eur"),
        [
            (payment.settlement_id, line.pk, line.household_id, line.amount)
            for payment in payments
            for line in payment.lines
        ],
    )
    # Conditional updates: anything claimed meanwhile rolls the chunk back rather than pay twice.
    line_ids = [line.pk for payment in payments for line in payment.lines]
    # The lines' hours bound the UPDATE, so PostgreSQL reads only those partitions of the ledger.
    first_hour = min((line.hour_start for payment in payments for line in payment.lines), default=period_end)
    claimed = HourlyUsage.objects.filter(
        bulk.among("pk", line_ids), hour_start__gte=first_hour, hour_start__lt=period_end, settled_at__isnull=True
    ).update(settled_at=now)
    coins = [(coin.pk, payment.settlement_id) for payment in payments for coin in payment.coins]
    reserved = bulk.assign(
        Utxo, "reserved_by_id", coins, where={"state": Utxo.State.AVAILABLE}, also={"state": Utxo.State.RESERVED}
    )
    if claimed != len(line_ids) or reserved != len(coins):
        raise DatabaseError(
            f"settling {len(payments)} households: {len(line_ids) - claimed} usage lines and "
            f"{len(coins) - reserved} coins were claimed concurrently"
        )
    bulk.insert(
        Utxo,
        ("wallet_id", "txid", "vout", "satoshis", "raw_parent"),
        [
            (payment.wallet.pk, payment.txid, vout, satoshis, payment.raw_tx)
            for payment in payments
            for vout, satoshis in payment.change
        ],
    )


def sign_from_coins(wallet, satoshis: int, spendable: Iterable) -> tuple[p2pkh.Signed, list, int] | None:
    """Sign a payment of ``satoshis`` with the fewest leading coins of ``spendable`` that cover it and its fee.

    ``wallet`` has ``derivation_index`` and ``address`` (a Wallet or a row of one); the coins have
    ``txid``, ``vout``, ``satoshis`` and ``raw_parent`` (Utxos or rows), in order of preference.
    None if all of them cannot pay. The transaction is the one bsv-sdk's P2PKH template signs
    (payments/p2pkh.py signs it on bsv-sdk's native layer): an output to the utility, the change
    back to the wallet's address, the fee at FEE_SATS_PER_KB.
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
    own = p2pkh.public_key_hash(wallet.address)
    parents: dict[tuple[str, int], p2pkh.Parent] = {}
    spends = []
    for coin in chosen:
        outpoint = (coin.txid, coin.vout)
        parent = parents.get(outpoint) or parents.setdefault(outpoint, p2pkh.parent_output(coin.raw_parent, coin.vout))
        spends.append((parent, coin.vout))
    outputs = [p2pkh.Output(satoshis, _utility_script()), p2pkh.Output(0, p2pkh.lock(own), change=True)]
    tx = p2pkh.pay(key.serialize(), _public_key(wallet, key, own), spends, outputs, rate)
    fee = total - sum(output.satoshis for output in tx.outputs)
    if fee < _ceil_div(len(tx.serialize()) * rate, 1000):
        return None
    return tx, chosen, fee


class _P2PKHUnlock(UnlockingScriptTemplate):
    """bsv-sdk's ``P2PKH().unlock(key)``, given the key's public key (withdrawals sign through bsv-sdk's objects).

    The SDK's template derives the public key again for every signature (an elliptic-curve
    multiplication, as costly as the signature) and builds a new class for every call; the wallet
    stores its public key, and one instance serves all of a payment's inputs. The unlocking script
    is the same: signature with its sighash flag, then the compressed public key.
    """

    def __init__(self, key: PrivateKey, public_key: bytes) -> None:
        self.key, self.public_key = key, public_key

    def sign(self, tx: Transaction, input_index: int) -> Script:
        sighash = tx.inputs[input_index].sighash
        signature = self.key.sign(tx.preimage(input_index))
        return Script(encode_pushdata(signature + sighash.to_bytes(1, "little")) + encode_pushdata(self.public_key))

    def estimated_unlocking_byte_length(self) -> int:
        return 107  # a 73-byte signature at most, a 33-byte key, two push opcodes


def _public_key(wallet, key: PrivateKey, public_key_hash: bytes) -> bytes:
    """The wallet's stored public key if it is the one its address hashes, else the key's own (derived)."""
    stored = getattr(wallet, "public_key", "")
    if stored:
        public = bytes.fromhex(stored)
        if _hash160(public) == public_key_hash:
            return public
        log.error("wallet_public_key_mismatch wallet=%s", wallet.pk)
    return key.public_key().serialize()


def _hashlib_hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def _pick_hash160() -> Callable[[bytes], bytes]:
    """bsv.hash.hash160 (RIPEMD-160 of SHA-256) through hashlib, a fifth of the cost of pycryptodome's,
    where this OpenSSL has RIPEMD-160 (some 3.0 builds keep it in the legacy provider)."""
    try:
        _hashlib_hash160(b"")
    except ValueError:
        return hash160
    return _hashlib_hash160


_hash160 = _pick_hash160()


@lru_cache(maxsize=4)
def _script_of(address: str) -> bytes:
    return p2pkh.lock(p2pkh.public_key_hash(address))


def _utility_script() -> bytes:
    """The utility's locking script, decoded once per process instead of once per payment."""
    return _script_of(keys.utility_address())


def _fee_for(inputs: int, outputs: int, rate: int) -> int:
    return _ceil_div((_OVERHEAD_BYTES + inputs * _INPUT_BYTES + outputs * _OUTPUT_BYTES) * rate, 1000)


def _ceil_div(numerator: int, denominator: int) -> int:
    # Satoshis stay integers: no float on the way to a fee.
    return -(-numerator // denominator)
