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


def test_a_new_master_key_derives_new_household_keys_once_the_key_caches_are_cleared(settings):
    from bsv.hd.bip32 import master_xprv_from_seed

    before = keys.household_key(5).wif()
    settings.WALLET_MASTER_KEY = str(master_xprv_from_seed(bytes(range(64)), keys.address_network()))
    # What tests and a restarted process do after WALLET_MASTER_KEY changes (see tests/energypay/test_security.py).
    for cached in (keys._master, keys._household_chain, keys._household_chain_public, keys.utility_address):
        cached.cache_clear()
    try:
        expected = ckd(keys._master(), f"{keys.HOUSEHOLD_ACCOUNT}/0/5").private_key()
        assert keys.household_key(5).wif() == expected.wif() != before
    finally:
        for cached in (keys._master, keys._household_chain, keys._household_chain_public, keys.utility_address):
            cached.cache_clear()
