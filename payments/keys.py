"""Household and utility keys, all derived from one master key (BIP32); none is ever stored.

The web process only needs addresses; signing happens in the settlement worker. Paths follow
docs/architecture.md ("BSV facts"): households at m/44'/236'/0'/0/<index>, the utility's demo address (local and
regtest only) at m/44'/236'/1'/0/0.
"""

from __future__ import annotations

import hmac
import secrets
from functools import cache
from hashlib import sha512

from bsv import PrivateKey
from bsv.constants import Network
from bsv.curve import curve
from bsv.hd.bip32 import Xprv, Xpub, ckd, master_xprv_from_seed
from bsv.utils import validate_address
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

HOUSEHOLD_ACCOUNT = "m/44'/236'/0'"
UTILITY_ACCOUNT = "m/44'/236'/1'"


def address_network() -> Network:
    return Network.MAINNET if settings.BSV_NETWORK == "mainnet" else Network.TESTNET


@cache
def _master() -> Xprv:
    text = settings.WALLET_MASTER_KEY or _dev_master_key()
    try:
        master = Xprv(text)
    except Exception:  # bsv-sdk raises several types; the message must not echo the key
        raise ImproperlyConfigured("WALLET_MASTER_KEY is not a valid extended private key.") from None
    if master.network != address_network():
        raise ImproperlyConfigured(
            f"WALLET_MASTER_KEY is a {master.network.value} key but BSV_NETWORK is {settings.BSV_NETWORK}."
        )
    return master


def _dev_master_key() -> str:
    """A random master key kept in var/ for DEBUG on local or regtest networks (settings enforce that)."""
    path = settings.WALLET_DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = str(master_xprv_from_seed(secrets.token_bytes(64), address_network()))
        path.write_text(key)
        path.chmod(0o600)
    return path.read_text().strip()


@cache
def _household_chain() -> Xprv:
    # m/44'/236'/0'/0, derived once: each household key is then one step away (half the cost).
    return ckd(ckd(_master(), HOUSEHOLD_ACCOUNT), "./0")


@cache
def _household_chain_public() -> Xpub:
    return _household_chain().xpub()


def household_address(index: int) -> str:
    return ckd(_household_chain_public(), f"./{index}").address()


def household_public(index: int) -> tuple[str, str]:
    """The address and the compressed public key (hex) at m/44'/236'/0'/0/<index>, from the account xpub alone."""
    child = ckd(_household_chain_public(), f"./{index}")
    return child.address(), child.public_key().serialize().hex()


@cache
def _chain_parts(payload: bytes) -> tuple[bytes, bytes, int]:
    """What every child derivation reads from an extended key: chain code, public key, secret.

    Keyed by the extended key's bytes, so a new WALLET_MASTER_KEY (whose chain is derived anew once
    the caches above are cleared) is never answered with the old key's parts.
    """
    chain = Xprv(payload)
    return chain.chain_code, chain.public_key().serialize(), chain.private_key().int()


def household_key(index: int) -> PrivateKey:
    """The key at m/44'/236'/0'/0/<index>: BIP32's non-hardened child step, as bsv-sdk's ``ckd`` takes it.

    Written out because ``ckd`` recomputes the parent's public key twice per child (an elliptic-curve
    multiplication each) and builds an extended key the caller throws away; the settlement worker
    derives one key per household and hour. tests/payments/test_keys.py holds both equal.
    """
    if not 0 <= index < 0x80000000:
        raise ValueError(f"{index} is not a non-hardened child index")
    chain_code, public, secret = _chain_parts(_household_chain().payload)
    digest = hmac.digest(chain_code, public + index.to_bytes(4, "big"), sha512)  # one C call, no HMAC object
    return PrivateKey((secret + int.from_bytes(digest[:32], "big")) % curve.n, network=address_network())


@cache
def utility_address() -> str:
    address = settings.UTILITY_ADDRESS or ckd(_master(), f"{UTILITY_ACCOUNT}/0/0").address()
    if not validate_address(address, address_network()):
        raise ImproperlyConfigured(f"UTILITY_ADDRESS is not a {address_network().value} address.")
    return address


def is_valid_address(address: str) -> bool:
    return validate_address(address, address_network())
