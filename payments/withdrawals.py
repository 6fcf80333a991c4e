"""Withdrawing a wallet's balance to an address the household or staff give: closing an account, a refund.

Two steps, as BTCPay's refunds and every exchange's withdrawals do it:

1. ``preview``: the address is checked for the configured network, and what would be sent is worked
   out (every spendable coin in, one output to the address, no change; the fee at FEE_SATS_PER_KB
   comes out of the amount). Nothing is written. The preview carries a signed ``token`` binding the
   household, the address and the amount shown.
2. ``withdraw`` (the confirmation, with that token): in one transaction holding the wallet's lock,
   the same figures are worked out again (a deposit or a payment meanwhile: refused, review again),
   the transaction is signed, the ``Withdrawal`` recorded ``signed`` with its coins reserved by a
   conditional UPDATE, and the audit entry written. The token's hash is the withdrawal's unique
   ``request_key``, so a second confirmation of one preview (a double click, two staff at once)
   finds the first one's withdrawal and sends nothing more; a second preview finds no coin left.
   The caller broadcasts after the commit (``broadcast.send_one(Withdrawal, ...)``); a crash in
   between leaves a ``signed`` withdrawal that ``watch_withdrawals`` sends (the same raw transaction
   again is harmless).

A withdrawal needs a household that owes nothing: hours not yet paid are paid by the hourly run
first (a closing household's last hours included); money the ledger owes the household (a credit
note after its hours were paid) is netted there too. Refusals carry a stable code and a sentence
for the person in front of the form; nothing changes when one is raised.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from bsv import P2PKH, Transaction, TransactionInput, TransactionOutput
from bsv.constants import Network
from bsv.utils import address_to_public_key_hash, validate_address
from django.conf import settings
from django.core import signing
from django.db import DatabaseError, transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from lib.money import format_money, satoshis_to_eur
from meters.audit import record_action
from meters.models import HourlyUsage, Household
from payments import keys
from payments.checks import native_signing_available
from payments.figures import eur, line_amount, newest_quote, owed
from payments.models import CommunityPass, Settlement, Utxo, Wallet, Withdrawal
from payments.settlement import _ceil_div, _fee_for, _P2PKHUnlock, _public_key, _spendable_coins
from payments.wallets import open_wallet

log = logging.getLogger(__name__)

MAX_ADDRESS = 64
_SALT = "payments.withdrawals"
TOKEN_MAX_AGE = 15 * 60  # seconds a preview may be confirmed in


class WithdrawalRefused(Exception):
    """A withdrawal that cannot be made now; ``code`` is stable, the message is for the person asking."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Preview:
    """What a confirmation would send: shown before it, bound to it by ``token``."""

    household_id: int
    address: str
    coins: int
    balance_satoshis: int
    fee_satoshis: int
    satoshis: int  # to the address
    eur: Decimal | None  # the amount at the newest quote, for people; None without any quote
    token: str


def check_address(text: str) -> str:
    """The address, stripped, if it is a P2PKH address of this system's network; else WithdrawalRefused.

    Mainnet takes mainnet addresses; testnet, regtest and the local ledger take testnet ones (they
    share the version byte). An address of the other network would be a payment nobody here can
    ever see, and ``P2PKH().lock`` does not check it (docs BSV_NOTES): it is refused by name.
    """
    address = (text or "").strip()
    if not address:
        raise WithdrawalRefused("withdrawal.address_missing", _("Enter the address to send the balance to."))
    network = keys.address_network()
    if len(address) > MAX_ADDRESS or not address.isalnum():
        raise WithdrawalRefused("withdrawal.address_invalid", _("This is not a Bitcoin SV address."))
    if validate_address(address, network):
        return address
    other = Network.TESTNET if network == Network.MAINNET else Network.MAINNET
    if validate_address(address, other):
        raise WithdrawalRefused(
            "withdrawal.address_wrong_network",
            _(
                "This is a %(theirs)s address, but this service runs on %(ours)s: the coins would be lost. "
                "Give a %(ours)s address."
            )
            % {"theirs": _network_name(other), "ours": network_label()},
        )
    raise WithdrawalRefused(
        "withdrawal.address_invalid", _("This is not a Bitcoin SV address (check it for a typing mistake).")
    )


def network_label() -> str:
    """The configured network in words, for people: which kind of address it takes."""
    return {
        "mainnet": _("mainnet"),
        "testnet": _("testnet"),
        "regtest": _("regtest (testnet addresses)"),
        "local": _("the local demo ledger (testnet addresses)"),
    }.get(settings.BSV_NETWORK, settings.BSV_NETWORK)


def _network_name(network: Network) -> str:
    return _("mainnet") if network == Network.MAINNET else _("testnet")


def preview(household: Household, address_text: str, now: datetime) -> Preview:
    """What withdrawing the wallet's balance to the address would send now (nothing is written)."""
    address = check_address(address_text)
    wallet = open_wallet(household)
    coins, fee, amount = _work_out(wallet, address, household)
    quote = newest_quote(now)
    token = signing.dumps({"h": household.pk, "a": address, "s": amount, "f": fee}, salt=_SALT)
    return Preview(
        household_id=household.pk,
        address=address,
        coins=len(coins),
        balance_satoshis=sum(coin.satoshis for coin in coins),
        fee_satoshis=fee,
        satoshis=amount,
        eur=satoshis_to_eur(amount, quote.bsv_eur) if quote else None,
        token=token,
    )


@dataclass(frozen=True)
class Outcome:
    withdrawal: Withdrawal
    new: bool  # False: this confirmation had been made before (a double click); nothing more was sent


def withdraw(household: Household, token: str, *, acting_user, source: str) -> Outcome:
    """Confirm a preview: sign, record and reserve exactly once (the module's step 2). Broadcast after commit.

    ``acting_user`` is who confirmed (staff or the household's login), recorded on the withdrawal and in
    the audit trail in the same transaction.
    """
    try:
        shown = signing.loads(token, salt=_SALT, max_age=TOKEN_MAX_AGE)
    except signing.SignatureExpired:
        raise WithdrawalRefused(
            "withdrawal.expired", _("This confirmation has expired: review the withdrawal again.")
        ) from None
    except signing.BadSignature:
        raise WithdrawalRefused(
            "withdrawal.bad_token", _("This confirmation is not valid: review the withdrawal again.")
        ) from None
    if shown.get("h") != household.pk:
        raise WithdrawalRefused(
            "withdrawal.bad_token", _("This confirmation is not valid: review the withdrawal again.")
        )
    address = check_address(shown["a"])
    request_key = hashlib.sha256(token.encode()).hexdigest()
    if not native_signing_available():
        raise WithdrawalRefused("withdrawal.unavailable", _("Withdrawals are unavailable right now; try again later."))
    wallet = open_wallet(household)
    with transaction.atomic(durable=True):
        wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
        done = Withdrawal.objects.filter(request_key=request_key).first()
        if done is not None:
            return Outcome(done, new=False)
        coins, fee, amount = _work_out(wallet, address, household)
        if (amount, fee) != (shown["s"], shown["f"]):
            raise WithdrawalRefused(
                "withdrawal.changed",
                _("The wallet's balance changed since the amount was shown: review the withdrawal again."),
            )
        tx = _sign(wallet, coins, address, amount)
        withdrawal = Withdrawal.objects.create(
            household=household,
            source=source,
            address=address,
            satoshis=amount,
            fee_satoshis=fee,
            txid=tx.txid(),
            raw_tx=tx.hex(),
            request_key=request_key,
            requested_by=acting_user if getattr(acting_user, "is_authenticated", False) else None,
        )
        reserved = Utxo.objects.filter(pk__in=[coin.pk for coin in coins], state=Utxo.State.AVAILABLE).update(
            state=Utxo.State.RESERVED, reserved_by_withdrawal=withdrawal
        )
        if reserved != len(coins):
            raise DatabaseError(f"{len(coins) - reserved} coins of wallet {wallet.pk} were claimed concurrently")
        record_action(
            household,
            "withdrawal.signed",
            f"Withdrawal of {amount:,} sat (fee {fee:,} sat) to {address}",
            actor=acting_user,
            withdrawal_id=withdrawal.pk,
            txid=withdrawal.txid,
            source=source,
        )
    log.info(
        "withdrawal_signed household=%s withdrawal=%s satoshis=%d fee=%d txid=%s",
        household.pk,
        withdrawal.pk,
        amount,
        fee,
        withdrawal.txid,
    )
    return Outcome(withdrawal, new=True)


def _work_out(wallet: Wallet, address: str, household: Household) -> tuple[list, int, int]:
    """The coins, the fee and the amount a withdrawal would send now; WithdrawalRefused when it cannot."""
    if address == wallet.address:
        raise WithdrawalRefused("withdrawal.own_address", _("This is the wallet's own address: give another one."))
    if address == keys.utility_address():
        raise WithdrawalRefused("withdrawal.utility_address", _("This is the utility's address: give your own."))
    owing = eur(HourlyUsage.objects.filter(owed(), household_id=household.pk).aggregate(t=Sum(line_amount()))["t"])
    if owing > 0:
        raise WithdrawalRefused(
            "withdrawal.owed",
            _(
                "%(owed)s of electricity is not paid yet. The hourly payment pays it within the hour "
                "(after the account closes, its last hours too); withdraw the balance after that."
            )
            % {"owed": format_money(owing, "EUR")},
        )
    if _in_flight(wallet):
        raise WithdrawalRefused(
            "withdrawal.pending",
            _("A payment from this wallet is on its way to the network; try again in a few minutes."),
        )
    coins = _spendable_coins([wallet]).get(wallet.pk, [])
    total = sum(coin.satoshis for coin in coins)
    fee = _fee_for(len(coins), 1, settings.FEE_SATS_PER_KB) if coins else 0
    amount = total - fee
    if amount < 1:
        raise WithdrawalRefused(
            "withdrawal.nothing",
            _("The wallet holds nothing to withdraw (deposits count once they are confirmed)."),
        )
    return coins, fee, amount


def _in_flight(wallet: Wallet) -> bool:
    """A payment of the wallet not accepted yet: its change cannot be spent, so the balance is not final."""
    pending = [Withdrawal.State.SIGNED, Withdrawal.State.BROADCAST]
    return (
        Settlement.objects.filter(household_id=wallet.household_id, state__in=pending).exists()
        or CommunityPass.objects.filter(household_id=wallet.household_id, state__in=pending).exists()
        or Withdrawal.objects.filter(household_id=wallet.household_id, state__in=Withdrawal.PENDING).exists()
    )


def _sign(wallet: Wallet, coins: list, address: str, amount: int) -> Transaction:
    """Every coin in, ``amount`` to ``address``, no change; the fee is what is left (checked against the rate)."""
    rate = settings.FEE_SATS_PER_KB
    key = keys.household_key(wallet.derivation_index)
    unlock = _P2PKHUnlock(key, _public_key(wallet, key, address_to_public_key_hash(wallet.address)))
    parents: dict[str, Transaction] = {}
    tx = Transaction()
    for coin in coins:
        parent = parents.get(coin.txid) or parents.setdefault(coin.txid, Transaction.from_hex(coin.raw_parent))
        tx.add_input(
            TransactionInput(source_transaction=parent, source_output_index=coin.vout, unlocking_script_template=unlock)
        )
    tx.add_output(TransactionOutput(locking_script=P2PKH().lock(address), satoshis=amount))
    tx.sign()
    fee = sum(coin.satoshis for coin in coins) - amount
    if fee < _ceil_div(len(tx.serialize()) * rate, 1000):  # the estimate is a signature's largest size: never
        raise WithdrawalRefused("withdrawal.fee", _("The network fee could not be worked out; try again."))
    return tx
