"""payments/p2pkh.py signs the very bytes bsv-sdk's Transaction objects sign, for every shape settlement makes."""

from __future__ import annotations

import pytest
from bsv import P2PKH, PrivateKey, Script, Transaction, TransactionInput, TransactionOutput
from bsv.constants import Network
from bsv.fee_models import SatoshisPerKilobyte
from bsv.utils import address_to_public_key_hash

from payments import p2pkh

KEY = PrivateKey(0x5EED_5EED_5EED, network=Network.TESTNET)
UTILITY = PrivateKey(0xC0FFEE, network=Network.TESTNET).address()


def faucet(satoshis: int, nonce: int) -> Transaction:
    """A parent paying ``satoshis`` to KEY, with a second output so the spent one is not always output 0."""
    return Transaction(
        [
            TransactionInput(
                source_txid="00" * 32, source_output_index=0xFFFFFFFF, unlocking_script=Script(bytes([nonce]))
            )
        ],
        [TransactionOutput(P2PKH().lock(UTILITY), 1), TransactionOutput(P2PKH().lock(KEY.address()), satoshis)],
    )


def by_bsv_sdk(parents: list[Transaction], pay: int, rate: int) -> Transaction:
    tx = Transaction()
    for parent in parents:
        tx.add_input(
            TransactionInput(
                source_transaction=parent, source_output_index=1, unlocking_script_template=P2PKH().unlock(KEY)
            )
        )
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(UTILITY), satoshis=pay))
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(KEY.address()), change=True))
    tx.fee(SatoshisPerKilobyte(rate))
    tx.sign()
    return tx


def by_p2pkh(parents: list[Transaction], pay: int, rate: int) -> p2pkh.Signed:
    spends = [(p2pkh.parent_output(parent.hex(), 1), 1) for parent in parents]
    outputs = [
        p2pkh.Output(pay, p2pkh.lock(address_to_public_key_hash(UTILITY))),
        p2pkh.Output(0, p2pkh.lock(address_to_public_key_hash(KEY.address())), change=True),
    ]
    return p2pkh.pay(KEY.serialize(), KEY.public_key().serialize(), spends, outputs, rate)


@pytest.mark.parametrize("rate", [1, 50, 100, 500, 1000])
@pytest.mark.parametrize("inputs", [1, 2, 3])
@pytest.mark.parametrize("pay", [1, 2083, 99_000])
def test_the_same_transaction_as_bsv_sdk(rate, inputs, pay):
    parents = [faucet(40_000 + 7 * n, n) for n in range(inputs)]

    expected, signed = by_bsv_sdk(parents, pay, rate), by_p2pkh(parents, pay, rate)

    assert signed.hex() == expected.hex()
    assert signed.txid() == expected.txid()
    assert [(o.satoshis, o.change) for o in signed.outputs] == [(o.satoshis, bool(o.change)) for o in expected.outputs]


@pytest.mark.parametrize("left", [0, 1, 2])
def test_a_change_of_at_most_one_satoshi_is_left_to_the_miners_as_bsv_sdk_leaves_it(left):
    fee = p2pkh.estimated_fee(1, [p2pkh.Output(0, b"\0" * 25), p2pkh.Output(0, b"\0" * 25)], 100)  # 23 sat
    parent = faucet(10_000, 9)
    pay = 10_000 - fee - left

    expected, signed = by_bsv_sdk([parent], pay, 100), by_p2pkh([parent], pay, 100)

    assert signed.hex() == expected.hex()
    assert len(signed.outputs) == (2 if left == 2 else 1)


def test_the_fee_is_bsv_sdks_float_arithmetic_to_the_satoshi():
    # 226 bytes at 100 sat/kB: 22.6 -> 23; every size from a 1-input to a 30-input payment at several rates.
    for inputs in range(1, 31):
        outputs = [p2pkh.Output(5, p2pkh.lock(b"\1" * 20)), p2pkh.Output(0, p2pkh.lock(b"\2" * 20), change=True)]
        tx = Transaction()
        for n in range(inputs):
            tx.add_input(
                TransactionInput(
                    source_transaction=faucet(1000, n),
                    source_output_index=1,
                    unlocking_script_template=P2PKH().unlock(KEY),
                )
            )
        tx.add_output(TransactionOutput(locking_script=Script(outputs[0].locking_script), satoshis=5))
        tx.add_output(TransactionOutput(locking_script=Script(outputs[1].locking_script), change=True))
        for rate in (1, 10, 100, 250, 1000):
            assert p2pkh.estimated_fee(inputs, outputs, rate) == SatoshisPerKilobyte(rate).compute_fee(tx)


def test_an_address_decodes_as_bsv_sdk_decodes_it():
    for secret in range(1, 300):
        for network in (Network.MAINNET, Network.TESTNET):
            address = PrivateKey(secret * 7919, network=network).address()
            assert p2pkh.public_key_hash(address) == address_to_public_key_hash(address)
    with pytest.raises(ValueError, match="checksum"):
        p2pkh.public_key_hash(KEY.address()[:-1] + ("2" if KEY.address()[-1] != "2" else "3"))
    with pytest.raises(ValueError, match="invalid"):
        p2pkh.public_key_hash("0OIl" + KEY.address()[4:])


def test_an_output_the_parent_does_not_have_is_refused_as_bsv_sdk_refuses_it():
    with pytest.raises(ValueError, match="existing source transaction output"):
        p2pkh.parent_output(faucet(1000, 1).hex(), 2)
