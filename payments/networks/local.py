"""The local ledger (BSV_NETWORK=local): what a BSV node would hold, kept in our database.

It accepts only what a node would accept (docs/architecture.md, "BSV facts"):
known unspent inputs, every input script verified by bsv-sdk's interpreter, outputs not above
inputs, no dust, a fee of at least FEE_SATS_PER_KB, and unconfirmed chains no longer than a node
allows. Money enters only through the faucet (``fund``); blocks come from ``mine``.

Rejection details borrow the node's reason strings (``txn-mempool-conflict``, ``missing inputs``,
``too-long-mempool-chain``...) so logs read the same on every network.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from typing import Any, NamedTuple

import _bsv_native as native  # bsv-sdk's native layer; present wherever settlement runs (payments.checks)
from bsv import P2PKH, Script, Transaction, TransactionInput, TransactionOutput
from bsv.base58 import base58check_encode
from bsv.constants import NETWORK_ADDRESS_PREFIX_DICT
from bsv.hash import hash256
from bsv.script.spend import Spend
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from payments import bulk
from payments.keys import address_network, is_valid_address
from payments.models import LedgerBlock, LedgerOutput, LedgerTransaction
from payments.networks.base import Coin, Outcome, Reply
from payments.p2pkh import varint

log = logging.getLogger(__name__)

# A node refuses a transaction that would make an unconfirmed chain longer than this, counting
# the transaction itself (the 26th link is "too-long-mempool-chain", checked on a real node).
MAX_UNCONFIRMED_CHAIN = 25
MAX_MONEY = 21_000_000 * 100_000_000
MAX_TX_BYTES = 10_000_000  # the node's default -maxtxsizepolicy since Genesis
DUST_SATS = 1
DATA_CARRIER = b"\x00\x6a"  # OP_FALSE OP_RETURN: provably unspendable, so 0 sat is allowed
SIGHASH_ALL_FORKID = 0x41  # a parsed input's sighash, as bsv-sdk's TransactionInput defaults it
NULL_TXID = "00" * 32
NULL_INDEX = 0xFFFFFFFF
MINE_ATTEMPTS = 10


class _Refused(Exception):
    """A check failed; carries the reply the broadcaster gets."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.reply = Reply(outcome, detail)


def _rejected(detail: str) -> _Refused:
    return _Refused(Outcome.REJECTED, detail)


class LocalLedger:
    name = "local"

    def reachable(self) -> tuple[bool, str]:
        return True, "in-process ledger"  # it is the database, which /healthz checks on its own

    # --- The BsvNetwork interface ---

    def broadcast(self, raw_hex: str) -> Reply:
        """Accept ``raw_hex`` into the mempool if a node would.

        1. parse it (malformed: REJECTED); a transaction we already hold: its status, unchanged;
        2. structure: inputs and outputs present, no duplicate input, amounts in range, no dust;
        3. inputs: every outpoint known (else REJECTED) and unspent (else DOUBLE_SPEND);
        4. money: outputs not above inputs, fee at least FEE_SATS_PER_KB;
        5. the unconfirmed chain stays within MAX_UNCONFIRMED_CHAIN;
        6. every input script, with bsv-sdk's interpreter (the costly check, so last);
        7. record it: claim the inputs with a conditional update (a concurrent spend loses),
           insert the transaction and its outputs, all in one database transaction.
        """
        try:
            raw, tx = _parse(raw_hex)
            txid = hash256(raw)[::-1].hex()
            known = self.status(txid)
            if known.outcome != Outcome.UNKNOWN:
                return known
            _check_structure(tx)
            spent = _load_inputs(tx)
            fee = _check_money(tx, spent, len(raw))
            _check_chain(spent)
            _verify_scripts(tx, spent)
            return self._accept(txid, raw, tx, fee, spent)
        except _Refused as refused:
            log.info("ledger_refused outcome=%s detail=%s", refused.reply.outcome, refused.reply.detail)
            return refused.reply

    def broadcast_many(self, raw_hexes: list[str]) -> list[Reply]:
        """``broadcast`` for many transactions: the replies broadcasting them one by one, in order, would get.

        1. parse each; one query for the transactions and their parents the ledger already holds,
           one for every output they spend;
        2. a transaction joins the batch only if broadcast() would accept it on what was loaded: new,
           well formed, every input known and unspent with a confirmed parent (no chain to walk),
           amounts, fee and scripts right, and no outpoint, parent or txid in common with a
           transaction before it in the list, so that recording it first changes no other reply;
        3. record the batch in one database transaction: the transactions, their outputs, and one
           conditional update claiming every input. A concurrent spend or insert rolls it all back,
           and every transaction goes through broadcast() instead;
        4. the others (known, refused, chained, conflicting) go through broadcast() one by one, in
           order, after the batch: their replies are broadcast()'s own.
        """
        parsed = []
        for index, raw_hex in enumerate(raw_hexes):
            plain = _parse_plain(raw_hex)
            if plain is None:
                continue  # broadcast() says why, or reads what the batch does not
            outpoints = [(txid, vout) for txid, vout, _, _ in plain.inputs]
            parsed.append((index, plain.id, plain.raw, plain, outpoints))
        # Every lookup goes by a unique key (txid, then transaction and vout), so the plans stay
        # index scans whatever the statistics say about tables that grew since the last ANALYZE.
        held = {
            txid: (pk, block_id)
            for pk, txid, block_id in LedgerTransaction.objects.filter(
                bulk.among("txid", {p[1] for p in parsed} | {op[0] for p in parsed for op in p[4]})
            )
            .order_by()
            .values_list("pk", "txid", "block_id")
        }
        loaded = _load_outputs({op for _, txid, _, _, ops in parsed if txid not in held for op in ops}, held)
        batch, earlier_txids, earlier_parents, earlier_outpoints = [], set(), set(), set()
        for index, txid, raw, tx, outpoints in parsed:
            entangled = (
                txid in held  # known: broadcast() returns its status
                or txid in earlier_txids  # the same transaction twice: the second is "known"
                or txid in earlier_parents  # an earlier one spends it: that one is "missing inputs"
                or any(op in earlier_outpoints or op[0] in earlier_txids for op in outpoints)
            )
            earlier_txids.add(txid)
            earlier_parents.update(op[0] for op in outpoints)
            earlier_outpoints.update(outpoints)
            if entangled:
                continue
            spent = [loaded.get(op) for op in outpoints]
            confirmed = all(held[op[0]][1] is not None for op in outpoints if op[0] in held)
            fee = _batch_fee(tx, raw, spent) if confirmed else None  # else broadcast() walks the chain
            if fee is not None:
                batch.append(_Acceptable(index, txid, raw.hex(), fee, [out.pk for out in spent], tx.outputs))
        replies: list[Reply | None] = [None] * len(raw_hexes)
        if batch and self._accept_many(batch):
            for item in batch:
                replies[item.index] = Reply(Outcome.ACCEPTED, "accepted into the mempool")
        return [reply or self.broadcast(raw_hex) for reply, raw_hex in zip(replies, raw_hexes, strict=True)]

    def status(self, txid: str) -> Reply:
        row = LedgerTransaction.objects.filter(txid=txid).select_related("block").only("block__height").first()
        if row is None:
            return Reply(Outcome.UNKNOWN, "not in the ledger")
        if row.block is None:
            return Reply(Outcome.ACCEPTED, "in the mempool")
        return Reply(Outcome.CONFIRMED, f"in block {row.block.height}", _confirmations(row.block, _tip()))

    def coins(self, address: str) -> list[Coin]:
        outputs = (
            LedgerOutput.objects.filter(address=address, spent_by__isnull=True)
            .select_related("transaction__block")
            .order_by("transaction_id", "vout")
        )
        tip = _tip()
        return [
            Coin(
                txid=out.transaction.txid,
                vout=out.vout,
                satoshis=out.satoshis,
                raw_parent=out.transaction.raw,
                confirmations=_confirmations(out.transaction.block, tip),
            )
            for out in outputs
        ]

    # --- Local only: the faucet and the miner ---

    def fund(self, address: str, satoshis: int) -> str:
        """Pay ``satoshis`` to ``address`` out of thin air; returns the faucet transaction's txid.

        The faucet transaction looks like a coinbase (one input with a null outpoint), so bsv-sdk
        parses it and signs against it like any parent. Random bytes in its input script give
        every faucet transaction its own txid, even for the same address and amount.
        """
        if not is_valid_address(address):
            raise ValueError(f"{address!r} is not a {address_network().value} address.")
        if not 0 < satoshis <= MAX_MONEY:
            raise ValueError(f"Satoshis must be between 1 and {MAX_MONEY}, not {satoshis}.")
        nonce = secrets.token_bytes(16)
        tx = Transaction(
            [
                TransactionInput(
                    source_txid=NULL_TXID,
                    source_output_index=NULL_INDEX,
                    unlocking_script=Script(bytes([len(nonce)]) + nonce),
                )
            ],
            [TransactionOutput(P2PKH().lock(address), satoshis)],
        )
        raw = tx.serialize()
        txid = hash256(raw)[::-1].hex()
        with transaction.atomic():
            _insert(txid, raw, tx.outputs, fee=0, is_faucet=True)
        log.info("ledger_funded txid=%s address=%s satoshis=%d", txid, address, satoshis)
        return txid

    def mine(self) -> LedgerBlock:
        """Put every unconfirmed transaction into a new block on top of the tip.

        Two miners at once race for the same height; the unique height makes one of them fail
        and build on the winner's block instead, so heights never repeat or skip. A block with
        nothing to confirm is still a block: confirmations keep growing, as on a real chain.
        """
        for _ in range(MINE_ATTEMPTS):
            try:
                with transaction.atomic():
                    block = LedgerBlock.objects.create(height=_tip() + 1, mined_at=timezone.now())
                    count = LedgerTransaction.objects.filter(block__isnull=True).update(block=block)
            except IntegrityError:
                continue
            log.info("ledger_mined height=%d transactions=%d", block.height, count)
            return block
        raise RuntimeError(f"Could not mine a block in {MINE_ATTEMPTS} attempts: too many concurrent miners.")

    # --- Recording ---

    def _accept(self, txid: str, raw: bytes, tx: Transaction, fee: int, spent: list[LedgerOutput]) -> Reply:
        try:
            with transaction.atomic():
                row = _insert(txid, raw, tx.outputs, fee=fee, is_faucet=False)
                # Conditional update: of two concurrent spends of one output, the second waits on the
                # first's row lock, then finds spent_by set and claims fewer rows than it needs.
                claimed = LedgerOutput.objects.filter(pk__in=[out.pk for out in spent], spent_by__isnull=True).update(
                    spent_by=row
                )
                if claimed != len(spent):
                    raise _Refused(Outcome.DOUBLE_SPEND, "")  # rolls back; the detail is found below
        except IntegrityError:
            # The same transaction, broadcast concurrently, was inserted first: report where it is.
            known = self.status(txid)
            if known.outcome == Outcome.UNKNOWN:
                raise
            return known
        except _Refused:
            # Another spend won the race; reload who spent what, in input order, to say which.
            fresh = LedgerOutput.objects.only("spent_by_id").in_bulk([out.pk for out in spent])
            return _conflict(tx, [fresh[out.pk] for out in spent]).reply
        log.info("ledger_accepted txid=%s fee=%d", txid, fee)
        return Reply(Outcome.ACCEPTED, "accepted into the mempool")

    def _accept_many(self, batch: list[_Acceptable]) -> bool:
        """Record every transaction of ``batch`` at once; False (nothing recorded) if a concurrent one interfered.

        The rows go in with payments.bulk (COPY on PostgreSQL): a batch is a settlement chunk, and
        the ORM's per-row cost was a fifth of settling a household.
        """
        try:
            with transaction.atomic():
                now = timezone.now()
                ids = bulk.insert(
                    LedgerTransaction,
                    ("txid", "raw", "fee", "is_faucet", "accepted_at"),
                    [(item.txid, item.raw_hex, item.fee, False, now) for item in batch],
                    ids=True,
                )
                addresses: dict[bytes, str] = {}  # most outputs pay the same few scripts (the utility's)
                bulk.insert(
                    LedgerOutput,
                    ("transaction_id", "vout", "satoshis", "locking_script", "address"),
                    [
                        (
                            row_id,
                            vout,
                            satoshis,
                            script.hex(),
                            addresses.get(script) or addresses.setdefault(script, _p2pkh_address(script)),
                        )
                        for row_id, item in zip(ids, batch, strict=True)
                        for vout, (satoshis, script) in enumerate(item.outputs)
                    ],
                )
                # One conditional update for all inputs, as in _accept: a concurrent spend of any of
                # them leaves the count short, and the whole batch rolls back.
                claims = [(output, row_id) for row_id, item in zip(ids, batch, strict=True) for output in item.inputs]
                if _claim_outputs(claims) != len(claims):
                    raise _Refused(Outcome.DOUBLE_SPEND, "an input was spent concurrently")
        except (IntegrityError, _Refused) as error:
            # A concurrent broadcast of one of them (IntegrityError on the txid) or of a conflicting
            # spend: broadcast(), one by one, tells each transaction apart.
            log.info("ledger_batch_fallback transactions=%d detail=%s", len(batch), error)
            return False
        # One line a batch (a settlement chunk): each payment's own line, with its txid, is the
        # settlement's (settlement_signed); per transaction only when debugging.
        log.info("ledger_accepted_batch transactions=%d fees=%d", len(batch), sum(item.fee for item in batch))
        if log.isEnabledFor(logging.DEBUG):
            for item in batch:
                log.debug("ledger_accepted txid=%s fee=%d", item.txid, item.fee)
        return True


class _Acceptable(NamedTuple):
    """A transaction broadcast_many found acceptable, as the rows that record it (no transaction objects kept)."""

    index: int  # in the list given to broadcast_many
    txid: str
    raw_hex: str
    fee: int
    inputs: list[int]  # ids of the LedgerOutputs it spends, in input order
    outputs: list[tuple[int, bytes]]  # (satoshis, locking script) in output order


def _load_outputs(
    outpoints: set[tuple[str, int]], held: dict[str, tuple[int, int | None]]
) -> dict[tuple[str, int], Any]:
    """The outputs at ``outpoints`` (what _load_inputs reads, for many), in one query.

    ``held`` maps the txids the ledger holds to their row id and block. Selected by parent and
    output index (the unique index on both), then matched exactly here. Rows with the attributes
    the checks read (``pk``, ``satoshis``, ``locking_script``, ``spent_by_id``), not model instances.
    """
    parents = {held[txid][0]: txid for txid, _ in outpoints if txid in held}
    if not parents:
        return {}
    outputs = LedgerOutput.objects.filter(
        bulk.among("transaction_id", parents), vout__in={vout for _, vout in outpoints}
    ).values_list("pk", "transaction_id", "vout", "satoshis", "locking_script", "spent_by_id", named=True)
    found = (((parents[out.transaction_id], out.vout), out) for out in outputs)
    return {outpoint: out for outpoint, out in found if outpoint in outpoints}


def _claim_outputs(claims: list[tuple[int, int]]) -> int:
    """Mark each (output, spender) pair's output spent by its spender if it is still unspent; returns how many.

    One statement for the whole batch, selected by primary key (payments.bulk.assign).
    """
    return bulk.assign(LedgerOutput, "spent_by_id", claims, where={"spent_by_id": None})


def _batch_fee(tx: _Plain, raw: bytes, spent: list[Any | None]) -> int | None:
    """The fee if broadcast() would accept ``tx`` (its parents confirmed), else None: broadcast() then decides.

    The same checks as broadcast()'s, on the parsed bytes; scripts only where every input is a
    standard P2PKH spend (``_p2pkh_scripts_valid``), anything else goes to broadcast()'s interpreter.
    """
    if any(out is None or out.spent_by_id is not None for out in spent):
        return None
    try:
        _check_outputs([(txid, vout) for txid, vout, _, _ in tx.inputs], tx.outputs)
        fee = _check_amounts(sum(out.satoshis for out in spent), sum(satoshis for satoshis, _ in tx.outputs), len(raw))
    except _Refused:
        return None
    return fee if _p2pkh_scripts_valid(tx, spent) else None


def _insert(
    txid: str, raw: bytes, outputs: Iterable[TransactionOutput], *, fee: int, is_faucet: bool
) -> LedgerTransaction:
    row = LedgerTransaction.objects.create(
        txid=txid, raw=raw.hex(), fee=fee, is_faucet=is_faucet, accepted_at=timezone.now()
    )
    LedgerOutput.objects.bulk_create(
        LedgerOutput(
            transaction=row,
            vout=vout,
            satoshis=out.satoshis,
            locking_script=out.locking_script.hex(),
            address=_p2pkh_address(out.locking_script.serialize()),
        )
        for vout, out in enumerate(outputs)
    )
    return row


# --- The checks, in the order broadcast() runs them ---


def _parse(raw_hex: str) -> tuple[bytes, Transaction]:
    if len(raw_hex) > 2 * MAX_TX_BYTES:
        raise _rejected("tx-size: not a transaction of at most 10 MB in hex")
    try:
        raw = bytes.fromhex(raw_hex)
        tx = Transaction.from_hex(raw)
    except Exception:  # bsv-sdk raises several types on bad input; all mean "not a transaction"
        tx = None
    # bsv-sdk 2.4.0 ignores trailing bytes and reads a truncated locktime as 0, so a transaction
    # is only well formed if it serializes back to exactly the bytes we were given (a node also
    # refuses non-canonical encodings).
    if tx is None or tx.serialize() != raw:
        raise _rejected("malformed transaction: the hex does not decode to exactly one transaction")
    return raw, tx


class _Plain(NamedTuple):
    """A transaction as broadcast_many reads it: its bytes and fields, no bsv-sdk objects."""

    raw: bytes
    id: str  # the txid; ``txid()`` as on a bsv-sdk Transaction
    version: int
    locktime: int
    inputs: list[tuple[str, int, bytes, int]]  # (source txid, output index, unlocking script, sequence)
    outputs: list[tuple[int, bytes]]  # (satoshis, locking script)

    def txid(self) -> str:
        return self.id


def _parse_plain(raw_hex: str) -> _Plain | None:
    """``_parse`` on bsv-sdk's native parser alone (which ``Transaction.from_hex`` calls first); None where
    ``_parse`` would refuse it or read it another way: broadcast() then decides."""
    if len(raw_hex) > 2 * MAX_TX_BYTES:
        return None
    try:
        raw = bytes.fromhex(raw_hex)
        fields = native.tx_from_bytes(raw)
        # Well formed only if it serializes back to exactly the bytes given (as _parse checks).
        if native.tx_to_bytes(fields["version"], fields["inputs"], fields["outputs"], fields["locktime"]) != raw:
            return None
    except Exception:  # whatever the native parser raises: broadcast() parses it again and says why
        return None
    return _Plain(
        raw,
        hash256(raw)[::-1].hex(),
        fields["version"],
        fields["locktime"],
        [
            (inp["source_txid"], inp["source_output_index"], inp["unlocking_script"], inp["sequence"])
            for inp in fields["inputs"]
        ],
        [(out["satoshis"], out["locking_script"]) for out in fields["outputs"]],
    )


def _check_structure(tx: Transaction) -> None:
    _check_outputs(
        [(inp.source_txid, inp.source_output_index) for inp in tx.inputs],
        [(out.satoshis, out.locking_script.serialize()) for out in tx.outputs],
    )


def _check_outputs(outpoints: list[tuple[str, int]], outputs: list[tuple[int, bytes]]) -> None:
    """Structure: inputs and outputs present, no outpoint spent twice, amounts in range, no dust."""
    if not outpoints:
        raise _rejected("bad-txns-vin-empty: a transaction needs at least one input")
    if not outputs:
        raise _rejected("bad-txns-vout-empty: a transaction needs at least one output")
    if len(set(outpoints)) != len(outpoints):
        raise _rejected("bad-txns-inputs-duplicate: the same outpoint is spent twice")
    for vout, (satoshis, script) in enumerate(outputs):
        if satoshis > MAX_MONEY:
            raise _rejected(f"bad-txns-vout-toolarge: output {vout} pays more than all the money there is")
        if satoshis < DUST_SATS and not script.startswith(DATA_CARRIER):
            raise _rejected(f"dust: output {vout} pays {satoshis} sat; only OP_FALSE OP_RETURN data may pay 0")
    if sum(satoshis for satoshis, _ in outputs) > MAX_MONEY:
        raise _rejected("bad-txns-txouttotal-toolarge: the outputs pay more than all the money there is")


def _load_inputs(tx: Transaction) -> list[LedgerOutput]:
    """The outputs ``tx`` spends, in input order, all in one query."""
    wanted = Q()
    for inp in tx.inputs:
        wanted |= Q(transaction__txid=inp.source_txid, vout=inp.source_output_index)
    found = {
        (out.transaction.txid, out.vout): out
        for out in LedgerOutput.objects.filter(wanted)
        .select_related("transaction")
        .only("vout", "satoshis", "locking_script", "spent_by_id", "transaction__txid", "transaction__block_id")
    }
    spent = []
    for index, inp in enumerate(tx.inputs):
        out = found.get((inp.source_txid, inp.source_output_index))
        if out is None:
            raise _rejected(f"missing inputs: input {index} spends {inp.source_txid}:{inp.source_output_index}")
        spent.append(out)
    if any(out.spent_by_id is not None for out in spent):
        raise _conflict(tx, spent)
    return spent


def _conflict(tx: Transaction, spent: list[LedgerOutput]) -> _Refused:
    """DOUBLE_SPEND naming the first input another transaction spent (``spent`` is in input order).

    A node words it differently once the spender is mined (the coin is simply gone), but for the
    wallet it is the same news: that coin is no longer ours to spend.
    """
    for index, out in enumerate(spent):
        if out.spent_by_id is None:
            continue
        spender = LedgerTransaction.objects.filter(pk=out.spent_by_id).values("txid", "block__height").first()
        outpoint = f"{tx.inputs[index].source_txid}:{tx.inputs[index].source_output_index}"
        if spender is None:  # the spend we lost to was rolled back since; still not ours to take
            break
        if spender["block__height"] is None:
            detail = f"txn-mempool-conflict: input {index} ({outpoint}) is spent by {spender['txid']}"
        else:
            detail = (
                f"bad-txns-inputs-missingorspent: input {index} ({outpoint}) was spent by {spender['txid']} "
                f"in block {spender['block__height']}"
            )
        return _Refused(Outcome.DOUBLE_SPEND, detail)
    return _Refused(Outcome.DOUBLE_SPEND, "txn-mempool-conflict: an input was spent concurrently")


def _check_money(tx: Transaction, spent: list[LedgerOutput], size: int) -> int:
    return _check_amounts(sum(out.satoshis for out in spent), sum(out.satoshis for out in tx.outputs), size)


def _check_amounts(total_in: int, total_out: int, size: int) -> int:
    """Return the fee, after checking the outputs are covered and the fee meets the policy."""
    if total_out > total_in:
        raise _rejected(f"bad-txns-in-belowout: outputs pay {total_out} sat but inputs hold {total_in} sat")
    fee = total_in - total_out
    rate = settings.FEE_SATS_PER_KB
    required = -(-size * rate // 1000)  # ceil, in integers
    if fee < required:
        # ARC answers HTTP 465 for this; the settlement treats it as a rejection.
        raise _rejected(f"fee too low: pays {fee} sat, {size} bytes at {rate} sat/kB need {required} sat")
    return fee


def _check_chain(spent: list[LedgerOutput]) -> None:
    """Refuse a transaction that would be the 26th link of an unconfirmed chain.

    Only unconfirmed parents matter, so after a block this costs no query at all. Otherwise one
    recursive query walks up through unconfirmed ancestors, stopping at the limit so a wide tree
    of ancestors cannot make it expensive.
    """
    parents = {out.transaction_id for out in spent if out.transaction.block_id is None}
    if parents and _unconfirmed_depth(parents) >= MAX_UNCONFIRMED_CHAIN:
        raise _rejected(
            f"too-long-mempool-chain: more than {MAX_UNCONFIRMED_CHAIN} unconfirmed transactions in a chain"
        )


def _unconfirmed_depth(parents: set[int]) -> int:
    """Length of the longest chain of unconfirmed transactions ending in one of ``parents``."""
    txs, outputs = LedgerTransaction._meta.db_table, LedgerOutput._meta.db_table
    placeholders = ", ".join(["%s"] * len(parents))
    sql = f"""
        WITH RECURSIVE chain(id, depth) AS (
            SELECT id, 1 FROM {txs} WHERE id IN ({placeholders})
            UNION
            SELECT parent.id, chain.depth + 1
              FROM chain
              JOIN {outputs} spent ON spent.spent_by_id = chain.id
              JOIN {txs} parent ON parent.id = spent.transaction_id
             WHERE parent.block_id IS NULL AND chain.depth < %s
        )
        SELECT MAX(depth) FROM chain
    """  # noqa: S608 (table names come from our models; values are parameters)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*parents, MAX_UNCONFIRMED_CHAIN])
        return cursor.fetchone()[0] or 0


def _verify_scripts(tx: Transaction, spent: list[LedgerOutput]) -> None:
    # The interpreter reads the other inputs' amounts and scripts from the inputs themselves.
    for inp, out in zip(tx.inputs, spent, strict=True):
        inp.satoshis = out.satoshis
        inp.locking_script = Script(out.locking_script)
    for index, inp in enumerate(tx.inputs):
        spend = Spend(
            {
                "sourceTXID": inp.source_txid,
                "sourceOutputIndex": inp.source_output_index,
                "sourceSatoshis": inp.satoshis,
                "lockingScript": inp.locking_script,
                "transactionVersion": tx.version,
                "otherInputs": tx.inputs[:index] + tx.inputs[index + 1 :],
                "outputs": tx.outputs,
                "inputIndex": index,
                "unlockingScript": inp.unlocking_script,
                "inputSequence": inp.sequence,
                "lockTime": tx.locktime,
            }
        )
        try:
            valid = spend.validate()
            reason = "the script left false on the stack"
        except Exception as error:  # RuntimeError for a failing script; other types for garbage
            valid, reason = False, str(error).splitlines()[0] if str(error) else type(error).__name__
        if not valid:
            raise _rejected(f"mandatory-script-verify-flag-failed: input {index}: {reason}")


def _p2pkh_scripts_valid(tx: _Plain, spent: list[Any]) -> bool:
    """``_verify_scripts`` for a transaction whose every input spends a standard P2PKH output with a
    signature and a public key: bsv-sdk's native interpreter (what ``Spend.validate`` runs) on the
    script chunks ``Spend`` would pass it, read off the bytes. False for any other script (broadcast()
    runs the whole interpreter on it) and for a failing one (broadcast() says why)."""
    locks = [bytes.fromhex(out.locking_script) for out in spent]
    chunks = []
    for (_, _, unlocking, _), lock in zip(tx.inputs, locks, strict=True):
        pushes = _two_pushes(unlocking)
        if pushes is None or not _is_p2pkh(lock):
            return False
        chunks.append((pushes, [(0x76, None), (0xA9, None), (0x14, lock[3:23]), (0x88, None), (0xAC, None)]))
    # What Spend hands the interpreter for the other inputs: outpoint, script, amount, sequence, sighash.
    others = [
        (txid, vout, lock, out.satoshis, sequence, SIGHASH_ALL_FORKID)
        for (txid, vout, _, sequence), lock, out in zip(tx.inputs, locks, spent, strict=True)
    ]
    outputs = [satoshis.to_bytes(8, "little") + varint(len(script)) + script for satoshis, script in tx.outputs]
    for index, ((txid, vout, _, sequence), (unlock_chunks, lock_chunks), out) in enumerate(
        zip(tx.inputs, chunks, spent, strict=True)
    ):
        try:
            native.spend_validate(
                unlock_chunks,
                lock_chunks,
                tx.version,
                txid,
                vout,
                tx.locktime,
                index,
                sequence,
                out.satoshis,
                others[:index] + others[index + 1 :],
                outputs,
            )
        except Exception:  # RuntimeError for a failing script, as in _verify_scripts
            return False
    return True


def _two_pushes(script: bytes) -> list[tuple[int, bytes]] | None:
    """The chunks of a script made of two direct pushes (1 to 75 bytes each), else None."""
    first = script[0] if script else 0
    if not 0 < first < 0x4C or len(script) < first + 2:
        return None
    second = script[first + 1]
    if not 0 < second < 0x4C or len(script) != first + 2 + second:
        return None
    return [(first, script[1 : first + 1]), (second, script[first + 2 :])]


def _is_p2pkh(script: bytes) -> bool:
    # OP_DUP OP_HASH160 <20 bytes> OP_EQUALVERIFY OP_CHECKSIG
    return len(script) == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac"


# --- Small helpers ---


def _p2pkh_address(script: bytes) -> str:
    """The address a standard P2PKH locking script pays, or '' for any other script."""
    # OP_DUP OP_HASH160 <20 bytes> OP_EQUALVERIFY OP_CHECKSIG
    if _is_p2pkh(script):
        return base58check_encode(NETWORK_ADDRESS_PREFIX_DICT[address_network()] + script[3:23])
    return ""


def _tip() -> int:
    return LedgerBlock.objects.aggregate(height=Max("height"))["height"] or 0


def _confirmations(block: LedgerBlock | None, tip: int) -> int:
    return 0 if block is None else tip - block.height + 1
