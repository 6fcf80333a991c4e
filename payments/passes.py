"""Community passes: access to the community comparison, bought with one payment to the utility.

Two ways to buy one:
- a household pays from its custodial wallet with one click (``buy_pass``). Money moves as in the
  hourly settlement (payments/settlement.py): sign and record under the wallet's lock, commit, then
  broadcast (payments/broadcast.py); a crash in between leaves a ``signed`` pass that the sweeper sends.
- a machine pays over HTTP 402 with a transaction it signed itself (``read_payment``, ``redeem``,
  ``issue_token``). Every transaction on the chain is public, so one that is already on the network
  when it is offered could be anybody's (a household's hourly payment pays the utility too): a
  payment must be new. Its txid is claimed (unique) before it is broadcast, so a client retrying
  after a 503 finds its own claim and is never charged twice. Once accepted, the payment is
  redeemed once: it returns an access token (``cpa_...``) that the client then sends as a bearer
  token until the pass ends. The same transaction offered again buys nothing: it is public, so it
  says nothing about who offers it. The payer whose answer was lost proves it paid by signing with
  the key of the first input (``Proof``), which replaces the token (docs/paywall.md).

Either way the pass is an outgoing payment (payments.models.OutgoingPayment): its replies, acceptance,
failure, sweep and confirmation are the lifecycle every kind shares, with the pass's own hooks there.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from bsv import P2PKH, PublicKey, Transaction
from bsv.keys import recover_public_key, text_digest
from bsv.utils import deserialize_ecdsa_recoverable, serialize_ecdsa_der, unstringify_ecdsa_recoverable
from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils.translation import gettext

from lib.money import format_sats
from meters.models import Household, hash_token
from payments import keys
from payments.broadcast import send
from payments.models import ACCESS_TOKEN_PREFIX, REFUSALS, CommunityPass, Utxo, Wallet, access_period
from payments.networks import BsvNetwork, NetworkUnavailable, Outcome, Reply
from payments.settlement import _spendable_coins, sign_from_coins
from payments.wallets import open_wallet

log = logging.getLogger(__name__)

State = CommunityPass.State
MAX_TX_BYTES = 50_000  # a payment of a few inputs is well under 1 kB; the X-PAYMENT header is capped anyway
MAX_SATOSHIS = 21_000_000 * 100_000_000  # every coin there will ever be; an output value is 8 bytes, up to 2**64 - 1


def live_pass(household: Household, now: datetime) -> CommunityPass | None:
    """The household's pass that opens the page now (the one lasting longest), if any."""
    candidates = (
        CommunityPass.objects.filter(household=household, valid_until__gt=now)
        .exclude(state__in=CommunityPass.FAILED)
        .order_by("-valid_until", "-pk")
    )
    return candidates.first()


# --- Paying from the household's wallet -----------------------------------------------------------


class CannotPay(Exception):
    """The wallet cannot pay for a pass; the message is for the household. Nothing changed."""


@dataclass(frozen=True)
class Purchase:
    community_pass: CommunityPass
    new: bool  # False: a live pass existed (a double click, a retry); nothing was paid


def buy_pass(household: Household, now: datetime) -> Purchase:
    """Sign and record a payment of COMMUNITY_PRICE_SATS to the utility, unless a pass is already live.

    In one transaction:
    1. lock the wallet row (lock order as in settlement: wallet first, then coins), so a double
       click or a concurrent settlement waits here and then sees what the other one did;
    2. a live pass: return it, pay nothing;
    3. choose spendable coins and sign (the settlement's own rules: payments.settlement); too little
       money: CannotPay, nothing recorded;
    4. record the pass (state signed), reserve its coins with a conditional UPDATE (a count short
       means someone else took one: DatabaseError, all rolled back), add its change coin.
    The caller broadcasts after commit (``broadcast.send_one(CommunityPass, ...)``).
    """
    price = settings.COMMUNITY_PRICE_SATS
    wallet = open_wallet(household)
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
        existing = live_pass(household, now)
        if existing is not None:
            return Purchase(existing, new=False)
        coins = _spendable_coins([wallet]).get(wallet.pk, [])
        signed = sign_from_coins(wallet, price, coins)
        if signed is None:
            spendable = sum(coin.satoshis for coin in coins)
            raise CannotPay(
                gettext(
                    "Your wallet can spend %(spendable)s now; unlocking costs %(price)s plus a small network fee. "
                    "Nothing was charged. Top up your wallet (deposits count once confirmed) and try again."
                )
                % {"spendable": format_sats(spendable), "price": format_sats(price)}
            )
        tx, chosen, fee = signed
        txid = tx.txid()
        if CommunityPass.objects.filter(txid=txid).exists():
            # Signing is deterministic: the same coins sign the same transaction the network refused
            # before. It would refuse it again; the next settlement spends those coins differently.
            raise CannotPay(
                gettext("The network refused this payment a moment ago. Nothing was charged; try again later.")
            )
        community_pass = CommunityPass.objects.create(
            household=household,
            source=CommunityPass.Source.WALLET,
            txid=txid,
            raw_tx=tx.hex(),
            satoshis=price,
            fee_satoshis=fee,
            payer=wallet.address,
            state=State.SIGNED,
            valid_until=now + access_period(),
        )
        reserved = Utxo.objects.filter(pk__in=[coin.pk for coin in chosen], state=Utxo.State.AVAILABLE).update(
            state=Utxo.State.RESERVED, reserved_by_pass=community_pass
        )
        if reserved != len(chosen):
            raise DatabaseError(f"{len(chosen) - reserved} coins of wallet {wallet.pk} were claimed concurrently")
        Utxo.objects.bulk_create(
            Utxo(wallet=wallet, txid=txid, vout=vout, satoshis=output.satoshis, raw_parent=community_pass.raw_tx)
            for vout, output in enumerate(tx.outputs)
            if output.change
        )
    log.info(
        "community_pass_signed household=%s pass=%s satoshis=%d fee=%d txid=%s",
        household.pk,
        community_pass.pk,
        price,
        fee,
        txid,
    )
    return Purchase(community_pass, new=True)


# --- Paying over HTTP 402 -------------------------------------------------------------------------


class PaymentRefused(Exception):
    """The offered payment buys nothing; the message says why (it goes back to the client)."""


class NetworkBusy(Exception):
    """The network gave no answer now; the client may send the same payment again later."""


@dataclass(frozen=True)
class Payment:
    txid: str
    raw_tx: str  # lowercase hex
    paid: int  # satoshis to the utility address
    payer: str  # the first input's P2PKH address, or ""


def read_payment(raw_hex: str) -> Payment:
    """Parse a client's raw transaction and check it pays the utility enough. Raises PaymentRefused."""
    if len(raw_hex) > 2 * MAX_TX_BYTES:
        raise PaymentRefused(f"the transaction is over {MAX_TX_BYTES} bytes")
    try:
        raw = bytes.fromhex(raw_hex)
    except ValueError:
        raise PaymentRefused("payload.transaction is not hexadecimal") from None
    try:
        tx = Transaction.from_hex(raw)
    except Exception:  # bsv-sdk raises several types on bad input; all mean "not a transaction"
        tx = None
    # bsv-sdk ignores trailing bytes and reads a truncated locktime as 0: only an exact round trip is one transaction.
    if tx is None or tx.serialize() != raw or not tx.inputs or not tx.outputs:
        raise PaymentRefused("payload.transaction does not decode to exactly one transaction with inputs and outputs")
    if sum(output.satoshis for output in tx.outputs) > MAX_SATOSHIS:
        # Not money (no network takes it), and more than the database's 64-bit integers hold.
        raise PaymentRefused("the transaction's outputs add up to more satoshis than exist")
    pay_to = P2PKH().lock(keys.utility_address()).serialize()
    paid = sum(output.satoshis for output in tx.outputs if output.locking_script.serialize() == pay_to)
    price = settings.COMMUNITY_PRICE_SATS
    if paid == 0:
        raise PaymentRefused(f"the transaction pays nothing to {keys.utility_address()} (a P2PKH output is needed)")
    if paid < price:
        raise PaymentRefused(f"the transaction pays {paid} sat to {keys.utility_address()}; {price} sat are required")
    return Payment(txid=tx.txid(), raw_tx=raw.hex(), paid=paid, payer=_payer(tx))


def _payer(tx: Transaction) -> str:
    """The address of the key that signed the first input, when it is a P2PKH spend (<sig> <pubkey>)."""
    try:
        chunks = tx.inputs[0].unlocking_script.chunks
        if len(chunks) != 2 or not chunks[1].data:
            return ""
        return PublicKey(chunks[1].data).address(network=keys.address_network())
    except Exception:  # not a public key: the payer stays unknown, the payment still counts
        return ""


ALREADY_REDEEMED = (
    "payment already redeemed; present the access token it returned (Authorization: Bearer cpa_...), or, "
    "if that answer was lost, prove you paid with X-PAYMENT-PROOF (docs/paywall.md)"
)
PROOF_WINDOW = timedelta(minutes=5)  # a proof's signedAt may be this far from the server's clock
PROOF_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Proof:
    """The payer's Bitcoin Signed Message signature over ``proof_text(txid, signed_at)``.

    Only the key of the payment's first input can make it, and it is sent to this server alone (the
    transaction is public, the proof never is). signedAt makes each proof usable once: a pass takes a
    proof only if it was signed later than the last one it took.
    """

    signed_at: datetime
    signature: str


def proof_text(txid: str, signed_at: datetime) -> str:
    return f"EnergyPay community access {txid} {signed_at:{PROOF_TIME_FORMAT}}"


def check_proof(payment: Payment, proof: Proof, now: datetime) -> None:
    """Refuse (PaymentRefused) a proof that is stale or not signed by the payment's payer."""
    if not payment.payer:
        raise PaymentRefused(
            "X-PAYMENT-PROOF: the transaction's first input is not a P2PKH spend, so no key can prove who paid"
        )
    if abs(now - proof.signed_at) > PROOF_WINDOW:
        raise PaymentRefused(
            f"X-PAYMENT-PROOF signedAt must be within {PROOF_WINDOW.seconds // 60} minutes of the server's time "
            f"({now:{PROOF_TIME_FORMAT}})"
        )
    text = proof_text(payment.txid, proof.signed_at)
    if not _signed_by(text, payment.payer, proof.signature):
        raise PaymentRefused(f"X-PAYMENT-PROOF signature is not the payer's ({payment.payer}) over {text!r}")


def _signed_by(text: str, address: str, signature: str) -> bool:
    # bsv.verify_signed_text compares with a mainnet address; the payer's is on this server's network.
    try:
        recoverable, compressed = unstringify_ecdsa_recoverable(signature)
        r, s, _ = deserialize_ecdsa_recoverable(recoverable)
        message = text_digest(text)
        public_key = recover_public_key(recoverable, message)
        return public_key.verify(serialize_ecdsa_der((r, s)), message) and (
            public_key.address(compressed=compressed, network=keys.address_network()) == address
        )
    except Exception:  # not base64, wrong length, not a point: bsv-sdk raises several types; all mean "no"
        return False


def redeem(payment: Payment, network: BsvNetwork, now: datetime, proof: Proof | None = None) -> CommunityPass:
    """The live pass ``payment`` buys, accepted by the network; the caller then issues its token.

    A machine's claim goes signed (claimed, being checked) -> broadcast (new to the network, being
    sent) -> seen / confirmed (the pass is open); refused at any step, it is dropped.
    1. a proof, if sent, must be the payer's (before anything is claimed or charged);
    2. claim the txid (a unique row that opens nothing yet); a claim that exists is a replay or a
       retry: a live pass is returned as it is unless its token was issued and no proof came with it
       (the transaction is public: it proves nothing), an expired or failed one is refused, one being
       checked by a concurrent request asks for a retry;
    3. a new claim: the transaction must be new to the network, else it is dropped and refused;
    4. broadcast and record the reply: accepted opens the pass; refused drops the claim
       (PaymentRefused); no answer keeps it for the client's retry and the refresher (NetworkBusy).
    """
    if proof is not None:
        check_proof(payment, proof, now)
    community_pass, created = _claim(payment, now)
    if community_pass.source != CommunityPass.Source.X402:
        raise PaymentRefused("the transaction paid for a household's pass; pay with a new transaction")
    if created:
        _require_new(community_pass, network)
    elif community_pass.state == State.SIGNED:
        raise NetworkBusy("the same payment is being checked by another request; send it again in a moment")
    if community_pass.state in CommunityPass.FAILED:
        raise PaymentRefused(f"the payment failed on the network: {community_pass.detail or community_pass.state}")
    if community_pass.state in CommunityPass.ACCEPTED:
        if not community_pass.grants_access(now):
            raise PaymentRefused(
                "the transaction already bought access, which ended at "
                f"{community_pass.valid_until:{PROOF_TIME_FORMAT}}; pay with a new transaction"
            )
        if community_pass.token_hash is not None and proof is None:
            raise PaymentRefused(ALREADY_REDEEMED)  # issue_token decides under the lock; this saves the work
        return community_pass
    reply = send(community_pass.raw_tx, network)
    state = community_pass.record_reply(reply, network)
    if state in CommunityPass.ACCEPTED:
        community_pass.refresh_from_db()
        log.info("community_pass_paid pass=%s txid=%s satoshis=%d", community_pass.pk, payment.txid, payment.paid)
        return community_pass
    if reply.outcome in REFUSALS or not state:
        raise PaymentRefused(f"the network refused the transaction: {reply.detail or reply.outcome}")
    raise NetworkBusy(f"the network did not answer ({reply.detail[:200]}); send the same payment again")


def issue_token(community_pass: CommunityPass, now: datetime, proof: Proof | None = None) -> str:
    """Redeem a live machine's pass: a new access token, returned once (only its hash is kept).

    Under the pass's lock, so of two requests redeeming one payment at once exactly one gets a token:
    - no token yet: this request redeems the payment (the payer's own retry after a 503, typically);
    - a token was issued: only a proof (checked by ``redeem``) signed later than the last one the pass
      took replaces it, and the old token stops working; without one, PaymentRefused(ALREADY_REDEEMED).
    The caller shows the token and does nothing after this that could fail.
    """
    token = ACCESS_TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        locked = CommunityPass.objects.select_for_update().get(pk=community_pass.pk)
        if not locked.grants_access(now):
            raise PaymentRefused("the pass this payment bought is no longer open; pay with a new transaction")
        replaced = locked.token_hash is not None
        if replaced and proof is None:
            raise PaymentRefused(ALREADY_REDEEMED)
        if proof is not None:
            if locked.proof_signed_at is not None and proof.signed_at <= locked.proof_signed_at:
                raise PaymentRefused(
                    "X-PAYMENT-PROOF was already used (or an older one): sign again with the current time"
                )
            locked.proof_signed_at = proof.signed_at
        locked.token_hash = hash_token(token)
        locked.save(update_fields=["token_hash", "proof_signed_at"])
    log.info("community_token_issued pass=%s replaced=%s", locked.pk, replaced)
    return token


def _require_new(claim: CommunityPass, network: BsvNetwork) -> None:
    """Move a fresh claim on to ``broadcast`` if the network does not know its transaction; else drop it."""
    try:
        known = network.status(claim.txid)
    except NetworkUnavailable as error:
        known = Reply(Outcome.RETRY, str(error))
    if known.outcome == Outcome.UNKNOWN or known.outcome in REFUSALS:
        CommunityPass.objects.filter(pk=claim.pk, state=State.SIGNED).update(state=State.BROADCAST)
        claim.state = State.BROADCAST
        return
    CommunityPass.objects.filter(pk=claim.pk, state=State.SIGNED).delete()
    if known.outcome == Outcome.RETRY:
        raise NetworkBusy(f"the network did not answer ({known.detail[:200]}); send the same payment again")
    raise PaymentRefused(
        "the transaction was already on the network before it was offered here (every transaction on the "
        "chain is public); pay with a new transaction"
    )


def _claim(payment: Payment, now: datetime) -> tuple[CommunityPass, bool]:
    try:
        with transaction.atomic():
            claim = CommunityPass.objects.create(
                household=None,
                source=CommunityPass.Source.X402,
                txid=payment.txid,
                raw_tx=payment.raw_tx,
                satoshis=payment.paid,
                payer=payment.payer[:64],
                state=State.SIGNED,
                valid_until=now + access_period(),
            )
            return claim, True
    except IntegrityError:
        # The same payment again (a retry, a replay, a race with itself): what it already bought.
        existing = CommunityPass.objects.filter(txid=payment.txid).first()
        if existing is None:  # claimed and dropped meanwhile
            raise NetworkBusy("the same payment is being processed; send it again") from None
        return existing, False
