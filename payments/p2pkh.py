"""P2PKH payments signed on bsv-sdk's native layer: the very bytes its Transaction objects sign, without the objects.

The settlement worker signs one payment per household and hour. Through bsv-sdk's ``Transaction``,
``TransactionInput``, ``Script`` and template objects a payment cost about four times its one
ECDSA signature in Python (parsing the parent into objects, building scripts, serializing the
transaction five times; tests/bench/settlement.py). Here the same steps call what those objects
call underneath (``_bsv_native``: parse, BIP143 preimages, signature, libsecp256k1), on bytes:

- each parent is parsed once, natively, and its txid is the hash of its serialization, as
  ``Transaction.txid()`` computes it;
- the fee is ``SatoshisPerKilobyte.compute_fee``'s, on the size its template estimate gives
  (107 bytes an unlocking script), and the change is dropped when at most one satoshi is left,
  as ``Transaction.fee`` does;
- each input is signed over its BIP143 preimage with SIGHASH_ALL|FORKID (deterministic RFC 6979
  signatures, low S), unlocking script = <signature + sighash byte> <compressed public key>.

Only standard P2PKH, sequence 0xFFFFFFFF, version 1, lock time 0: the settlement's and the community
pass's payments. tests/payments/test_p2pkh.py holds the bytes equal to bsv-sdk's own for many amounts,
fee rates, numbers of inputs and a change too small to keep; the ledger verifies every payment with
bsv-sdk's interpreter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256

import _bsv_native as native  # present wherever settlement signs: payments.checks refuses to settle without it
from bsv import Transaction

VERSION = 1
LOCKTIME = 0
SEQUENCE = 0xFFFFFFFF
SIGHASH_ALL_FORKID = 0x41
_BASE58 = {char: value for value, char in enumerate("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")}
_ADDRESS = re.compile(r"[1mn][a-km-zA-HJ-NP-Z1-9]{24,33}")  # bsv.utils.decode_address's
UNLOCKING_ESTIMATE = 107  # a 73-byte signature at most, a 33-byte key, two push opcodes (bsv-sdk's P2PKH template)


@dataclass(frozen=True)
class Parent:
    """What a payment reads from the output it spends: the parent's txid, the output's amount and script."""

    txid: str
    satoshis: int
    locking_script: bytes


@dataclass(frozen=True)
class Output:
    satoshis: int
    locking_script: bytes
    change: bool = False

    def serialize(self) -> bytes:
        return self.satoshis.to_bytes(8, "little") + varint(len(self.locking_script)) + self.locking_script


class Signed:
    """A signed transaction as bytes, read as bsv-sdk's ``Transaction`` is: ``txid()``, ``hex()``, ``outputs``."""

    __slots__ = ("_raw", "_txid", "outputs")

    def __init__(self, raw: bytes, outputs: list[Output]) -> None:
        self._raw, self.outputs = raw, outputs
        self._txid = _hash256(raw)[::-1].hex()

    def serialize(self) -> bytes:
        return self._raw

    def hex(self) -> str:
        return self._raw.hex()

    def txid(self) -> str:
        return self._txid


def public_key_hash(address: str) -> bytes:
    """``bsv.utils.address_to_public_key_hash``: the same checks (form, base58 checksum), a dict instead of
    ``str.index`` per character (a tenth of the time)."""
    if not _ADDRESS.fullmatch(address):
        raise ValueError(f"invalid P2PKH address {address}")
    number = 0
    for char in address:
        number = number * 58 + _BASE58[char]
    leading = len(address) - len(address.lstrip("1"))
    decoded = b"\x00" * leading + number.to_bytes((number.bit_length() + 7) // 8, "big")
    payload, checksum = decoded[:-4], decoded[-4:]
    if _hash256(payload)[:4] != checksum:
        raise ValueError(f"unmatched base58 checksum in {address}")
    return payload[1:]


def lock(public_key_hash: bytes) -> bytes:
    """OP_DUP OP_HASH160 <20 bytes> OP_EQUALVERIFY OP_CHECKSIG."""
    return b"\x76\xa9\x14" + public_key_hash + b"\x88\xac"


def parent_output(raw_parent: str, vout: int) -> Parent:
    """Output ``vout`` of the transaction ``raw_parent`` (hex), as ``TransactionInput(source_transaction=)`` reads it.

    ValueError when it has no such output (bsv-sdk raises the same).
    """
    raw = bytes.fromhex(raw_parent)
    try:
        parsed = native.tx_from_bytes(raw)
    except ValueError:
        parsed = None  # bsv-sdk then parses in Python, which may read what the native parser refuses
    if parsed is None:
        tx = Transaction.from_hex(raw)
        if not 0 <= vout < len(tx.outputs):
            raise ValueError("source_output_index does not reference an existing source transaction output")
        return Parent(tx.txid(), tx.outputs[vout].satoshis, tx.outputs[vout].locking_script.serialize())
    outputs = parsed["outputs"]
    if not 0 <= vout < len(outputs):
        raise ValueError("source_output_index does not reference an existing source transaction output")
    # Transaction.txid() hashes the parent as it serializes it again, not the bytes it was given.
    canonical = native.tx_to_bytes(parsed["version"], parsed["inputs"], outputs, parsed["locktime"])
    return Parent(_hash256(canonical)[::-1].hex(), outputs[vout]["satoshis"], outputs[vout]["locking_script"])


def estimated_fee(inputs: int, outputs: Sequence[Output], rate: int) -> int:
    """``SatoshisPerKilobyte(rate).compute_fee`` of an unsigned P2PKH transaction with these inputs and outputs.

    Its arithmetic, float included: the same fee, so the same transaction as bsv-sdk's.
    """
    size = 4 + _varint_size(inputs) + inputs * (40 + _varint_size(UNLOCKING_ESTIMATE) + UNLOCKING_ESTIMATE)
    size += _varint_size(len(outputs))
    for output in outputs:
        size += 8 + _varint_size(len(output.locking_script)) + len(output.locking_script)
    size += 4
    return math.ceil((size / 1000) * rate)


def pay(
    secret: bytes, public_key: bytes, spends: Sequence[tuple[Parent, int]], outputs: list[Output], rate: int
) -> Signed:
    """Sign a payment of ``spends`` (each a parent and its output index) to ``outputs``.

    A change output (``change=True``, its amount ignored) gets what is left after the fee, or is
    dropped when at most one satoshi is left (``Transaction.fee``). Every input is the key's.
    """
    fee = estimated_fee(len(spends), outputs, rate)
    change_outputs = [output for output in outputs if output.change]
    left = sum(parent.satoshis for parent, _ in spends) - fee
    left -= sum(output.satoshis for output in outputs if not output.change)
    if change_outputs:
        if left <= len(change_outputs):
            outputs = [output for output in outputs if not output.change]
        else:
            each = left // len(change_outputs)
            outputs = [Output(each, o.locking_script, True) if o.change else o for o in outputs]
    serialized = [output.serialize() for output in outputs]
    preimages = native.tx_preimages(
        VERSION,
        LOCKTIME,
        [
            (parent.txid, vout, parent.locking_script, parent.satoshis, SEQUENCE, SIGHASH_ALL_FORKID)
            for parent, vout in spends
        ],
        serialized,
    )
    key_push = _push(public_key)
    parts = [VERSION.to_bytes(4, "little"), varint(len(spends))]
    for (parent, vout), preimage in zip(spends, preimages, strict=True):
        signature = native.ecdsa_sign(_hash256(preimage), secret) + bytes([SIGHASH_ALL_FORKID])
        unlocking = _push(signature) + key_push
        parts += [
            bytes.fromhex(parent.txid)[::-1],
            vout.to_bytes(4, "little"),
            varint(len(unlocking)),
            unlocking,
            SEQUENCE.to_bytes(4, "little"),
        ]
    parts += [varint(len(outputs)), *serialized, LOCKTIME.to_bytes(4, "little")]
    return Signed(b"".join(parts), outputs)


def _hash256(data: bytes) -> bytes:
    """SHA-256 twice through OpenSSL (hashlib), as bsv-sdk's Python layer hashes (``bsv.hash.hash256``)."""
    return sha256(sha256(data).digest()).digest()


def _push(data: bytes) -> bytes:
    """A minimal push of a signature or a public key (bsv-sdk's encode_pushdata for 2 to 75 bytes)."""
    if not 1 < len(data) < 0x4C:
        raise ValueError(f"a {len(data)}-byte push is no signature or public key")
    return bytes([len(data)]) + data


def _varint_size(n: int) -> int:
    return 1 if n <= 0xFC else 3 if n <= 0xFFFF else 5 if n <= 0xFFFFFFFF else 9


def varint(n: int) -> bytes:
    """Bitcoin's variable-length integer (CompactSize), as transactions serialise counts and lengths."""
    if n <= 0xFC:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    if n <= 0xFFFFFFFF:
        return b"\xfe" + n.to_bytes(4, "little")
    return b"\xff" + n.to_bytes(8, "little")
