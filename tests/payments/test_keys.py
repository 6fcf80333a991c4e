"""Household keys: the worker's own BIP32 step derives exactly the keys bsv-sdk's ckd derives."""

from __future__ import annotations

import pytest
from bsv.hd.bip32 import ckd

from payments import keys


@pytest.mark.parametrize("index", [0, 1, 7, 1_000, 123_456_789, 0x7FFFFFFF])
def test_a_household_key_is_bsv_sdks_bip32_child_of_the_household_chain(index):
    expected = ckd(keys._master(), f"{keys.HOUSEHOLD_ACCOUNT}/0/{index}").private_key()

    key = keys.household_key(index)

    assert key.wif() == expected.wif()
    assert key.network == expected.network
    assert key.address() == keys.household_address(index)


@pytest.mark.parametrize("index", [-1, 0x80000000])
def test_an_index_outside_the_non_hardened_range_is_refused(index):
    with pytest.raises(ValueError, match="non-hardened"):
        keys.household_key(index)
