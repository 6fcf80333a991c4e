"""Wallets, coins, prices and settlements; plus the local ledger's own tables.

Lock order, extending meters/models.py: the Wallet row first, then the household's Meter rows,
then usage lines and coins. Ingest never takes a wallet lock, so the two never wait on each other
in a circle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from meters.hooks import emit, emit_many
from meters.models import HourlyUsage, Household, Meter, hash_token
from meters.usage import reopen_lines
from payments import bulk
from payments.networks.base import BsvNetwork, NetworkUnavailable, Outcome, Reply

log = logging.getLogger(__name__)

ACCESS_TOKEN_PREFIX = "cpa_"  # noqa: S105 (a prefix, not a secret): energypay/logging.py redacts cpa_... tokens


class Wallet(models.Model):
    """A household's custodial wallet. Its key derives from WALLET_MASTER_KEY and is never stored."""

    household = models.OneToOneField(Household, on_delete=models.PROTECT, related_name="wallet")
    derivation_index = models.PositiveIntegerField(unique=True, help_text="m/44'/236'/0'/0/<index>")
    address = models.CharField(max_length=64, unique=True)
    # Public, like the address it hashes to: stored so that signing need not derive it again from the
    # private key (an elliptic-curve multiplication per payment, as costly as the signature itself).
    public_key = models.CharField(max_length=66, blank=True, help_text="Compressed public key, hex.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["household"]

    def __str__(self) -> str:
        return f"{self.household}: {self.address}"

    def sync_coins(self, network: BsvNetwork) -> int:
        """Add coins the network holds for the wallet that we do not know yet, and note confirmations.

        Returns how many coins became new or newly confirmed: a reason to try an arrears payment again.
        Our database stays the truth for our own spends (a coin we reserved or spent is never made
        available again here), since explorers lag behind what we just broadcast.
        """
        coins = network.coins(self.address)
        with transaction.atomic():
            known = {
                (txid, vout): confirmed
                for txid, vout, confirmed in Utxo.objects.filter(
                    wallet=self, txid__in={c.txid for c in coins}
                ).values_list("txid", "vout", "confirmed")
            }
            new = [
                Utxo(
                    wallet=self,
                    txid=c.txid,
                    vout=c.vout,
                    satoshis=c.satoshis,
                    raw_parent=c.raw_parent,
                    confirmed=c.confirmations > 0,
                )
                for c in coins
                if (c.txid, c.vout) not in known
            ]
            Utxo.objects.bulk_create(new, ignore_conflicts=True)
            confirmed = [c for c in coins if c.confirmations > 0 and known.get((c.txid, c.vout)) is False]
            if confirmed:
                outpoints = Q()
                for coin in confirmed:
                    outpoints |= Q(txid=coin.txid, vout=coin.vout)
                Utxo.objects.filter(outpoints, wallet=self).update(confirmed=True)
            mined = [c for c in coins if c.confirmations > 0 and known.get((c.txid, c.vout)) is not True]
            self._emit_deposits(new, mined)
        if new or confirmed:
            log.info("wallet_synced wallet=%s new_coins=%d newly_confirmed=%d", self.pk, len(new), len(confirmed))
        return len(new) + len(confirmed)

    def _emit_deposits(self, new: list[Utxo], confirmed: list) -> None:
        """deposit.received for transactions first seen paying the wallet, deposit.confirmed for those now in a block.

        A deposit is a transaction, not a coin (one may pay the address twice): coins are grouped by
        txid. The household's own payments' change is not a deposit (payments.history says the same).
        A transaction first seen already in a block is received and confirmed at once: both events.
        Inside sync_coins' transaction (meters.hooks.emit_many), so an event commits with its coins.
        """
        if not new and not confirmed:
            return
        seen: dict[str, int] = {}
        for coin in new:
            seen[coin.txid] = seen.get(coin.txid, 0) + coin.satoshis
        mined: dict[str, int] = {}
        for coin in confirmed:
            mined[coin.txid] = mined.get(coin.txid, 0) + coin.satoshis
        txids = set(seen) | set(mined)
        own = set()
        for model in (Settlement, CommunityPass, Withdrawal):
            mine = model.objects.filter(household_id=self.household_id, txid__in=txids)
            own |= set(mine.values_list("txid", flat=True))
        # A coin confirmed now but known before counts the whole deposit: its other coins may be confirmed already.
        totals = dict(
            Utxo.objects.filter(wallet=self, txid__in=set(mined) - set(seen))
            .values("txid")
            .annotate(total=models.Sum("satoshis"))
            .values_list("txid", "total")
            .order_by()
        )
        events = [
            (
                "deposit.received",
                self.household_id,
                {"household_id": self.household_id, "txid": txid, "satoshis": sats, "confirmed": txid in mined},
            )
            for txid, sats in sorted(seen.items())
            if txid not in own
        ]
        events += [
            (
                "deposit.confirmed",
                self.household_id,
                {
                    "household_id": self.household_id,
                    "txid": txid,
                    "satoshis": int(seen.get(txid) or totals.get(txid, n)),
                },
            )
            for txid, n in sorted(mined.items())
            if txid not in own
        ]
        emit_many(events)

    def resync_quietly(self, network: BsvNetwork) -> None:
        """sync_coins after a refused payment; a network that does not answer now only delays it."""
        try:
            self.sync_coins(network)
        except NetworkUnavailable as error:
            # The coins come back with the next sync (before the next arrears retry); nothing is lost.
            log.warning("coin_sync_deferred wallet=%s detail=%s", self.pk, error)


class Utxo(models.Model):
    """A coin the wallet can spend, with the raw transaction that made it (signing needs it)."""

    class State(models.TextChoices):
        AVAILABLE = "available", "Available"
        RESERVED = "reserved", "Reserved by a payment"
        SPENT = "spent", "Spent"

    # No index of its own: utxo_wallet_state and utxo_wallet_created begin with it.
    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="utxos", db_index=False)
    txid = models.CharField(max_length=64)
    vout = models.PositiveIntegerField()
    satoshis = models.PositiveBigIntegerField()
    raw_parent = models.TextField(help_text="Hex of the transaction that created this output.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.AVAILABLE)
    confirmed = models.BooleanField(default=False)
    # Indexed only where set (utxo_reserved_by below): most coins are reserved by nothing.
    reserved_by = models.ForeignKey(
        "Settlement", on_delete=models.PROTECT, null=True, blank=True, related_name="inputs", db_index=False
    )
    # A community pass bought from the wallet reserves its coins here; a coin is reserved by at most
    # one payment, and both kinds of payment pick only available coins under the wallet's lock.
    reserved_by_pass = models.ForeignKey(
        "CommunityPass", on_delete=models.PROTECT, null=True, blank=True, related_name="inputs", db_index=False
    )
    # A withdrawal of the wallet's balance (closing an account, a refund) reserves its coins here.
    reserved_by_withdrawal = models.ForeignKey(
        "Withdrawal", on_delete=models.PROTECT, null=True, blank=True, related_name="inputs", db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["wallet", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["txid", "vout"], name="utxo_unique_outpoint"),
            models.CheckConstraint(
                condition=Q(state="available", reserved_by__isnull=True) | ~Q(state="available"),
                name="utxo_available_is_unreserved",
            ),
            models.CheckConstraint(
                condition=Q(state="available", reserved_by_pass__isnull=True) | ~Q(state="available"),
                name="utxo_available_is_unreserved_by_pass",
            ),
            models.CheckConstraint(
                condition=Q(state="available", reserved_by_withdrawal__isnull=True) | ~Q(state="available"),
                name="utxo_available_is_unreserved_by_withdrawal",
            ),
            # At most one of the three links is set: a coin is reserved by at most one payment.
            models.CheckConstraint(
                condition=Q(reserved_by__isnull=True, reserved_by_pass__isnull=True)
                | Q(reserved_by__isnull=True, reserved_by_withdrawal__isnull=True)
                | Q(reserved_by_pass__isnull=True, reserved_by_withdrawal__isnull=True),
                name="utxo_reserved_by_one_payment",
            ),
        ]
        # Every index is written again by each change of state (reserved, spent): the settlement
        # worker writes three versions of a coin an hour, so only indexes something reads are kept.
        indexes = [
            models.Index(fields=["wallet", "state"], name="utxo_wallet_state"),
            models.Index(fields=["wallet", "created_at"], name="utxo_wallet_created"),
            models.Index(fields=["reserved_by"], condition=Q(reserved_by__isnull=False), name="utxo_reserved_by"),
            models.Index(
                fields=["reserved_by_pass"], condition=Q(reserved_by_pass__isnull=False), name="utxo_reserved_by_pass"
            ),
            models.Index(
                fields=["reserved_by_withdrawal"],
                condition=Q(reserved_by_withdrawal__isnull=False),
                name="utxo_reserved_by_withdrawal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.txid}:{self.vout} {self.satoshis} sat ({self.state})"


class PriceQuote(models.Model):
    source = models.CharField(max_length=20)
    bsv_eur = models.DecimalField("BSV/EUR", max_digits=18, decimal_places=8)
    fetched_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-fetched_at"]

    def __str__(self) -> str:
        return f"{self.bsv_eur} EUR/BSV from {self.source} at {self.fetched_at:%Y-%m-%d %H:%M:%S} UTC"


class PaymentState(models.TextChoices):
    """Where an outgoing payment is on its way to a block; every kind goes through the same states."""

    # The labels are shown to households (the payment pages), in their language.
    SIGNED = "signed", _("Signed")
    # Only a machine's pass claim: new to the network, being sent (a payment we sign goes from signed to seen).
    BROADCAST = "broadcast", _("Broadcast")
    SEEN = "seen", _("Seen on the network")
    CONFIRMED = "confirmed", _("Confirmed")
    REJECTED = "rejected", _("Rejected")
    DOUBLE_SPEND = "double_spend", _("Double spend")


class OutgoingPayment(models.Model):
    """A payment from our side to the network: signed, sent, seen, confirmed, or refused for good.

    One lifecycle for every kind (settlements, community passes, withdrawals), in
    the shape of pretix's ``OrderPayment``: the state changes are methods here, each in its own
    transaction holding the row's lock, and a payment that moved on meanwhile makes a call a logged
    no-op. What a change means for one kind (usage owed again, a claim dropped) is that kind's hook:
    ``accepted_changes``, ``on_failed``, ``drop_on_failure``, ``lock_payer``. Sending, the sweep of
    signed payments and the following of accepted ones to a block are payments/broadcast.py's.
    """

    State = PaymentState
    PENDING = (State.SIGNED, State.BROADCAST, State.SEEN)
    FAILED = (State.REJECTED, State.DOUBLE_SPEND)
    ACCEPTED = (State.SEEN, State.CONFIRMED)
    COIN_LINK = ""  # the Utxo foreign key by which the payment reserves its coins
    LOG_NAME = ""  # prefix of the log events, e.g. settlement_failed

    txid = models.CharField(max_length=64)
    raw_tx = models.TextField()
    state = models.CharField(max_length=15, choices=PaymentState.choices, default=PaymentState.SIGNED)
    detail = models.TextField(blank=True, help_text="What the network last said.")
    broadcast_attempts = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True, help_text="Signed, or last sent to the network.")

    class Meta:
        abstract = True

    # --- What differs by kind (the hooks) --------------------------------------------------------

    @classmethod
    def accepted_changes(cls, state: str, now: datetime) -> dict:
        """Fields (values or expressions on the row before the change) an UPDATE to accepted ``state`` also sets."""
        return {}

    @classmethod
    def sweepable(cls, now: datetime) -> QuerySet:
        """The signed payments the sweeper may send again (payments/broadcast.py applies the backoff)."""
        return cls.objects.filter(state=PaymentState.SIGNED)

    @classmethod
    def abandon_stale(cls, now: datetime) -> int:
        """Drop signed rows that are no payment of ours to send (none, unless a kind says otherwise)."""
        return 0

    def lock_payer(self) -> Wallet | None:
        """Lock the rows that come before this one in the lock order; the wallet to resync after a refusal."""
        return None

    def drop_on_failure(self) -> bool:
        """Whether a refused payment is deleted rather than kept as failed history."""
        return False

    def on_failed(self) -> None:
        """Undo what the payment did in our books, in the transaction that marks it failed."""

    @classmethod
    def on_accepted(cls, ids: list[int], state: str, now: datetime) -> None:
        """In the transaction that moved ``ids`` to accepted ``state`` at ``now`` (accept_locked): tell who listens."""

    # --- The lifecycle -----------------------------------------------------------------------------

    def record_reply(self, reply: Reply, network: BsvNetwork) -> str:
        """Record what the network said to one broadcast; returns the new state ("" if the row was dropped).

        Every reply is a counted try, which also restarts the backoff (``updated_at``; an update()
        leaves auto_now alone). No answer keeps the payment signed, its reason shown, for the sweeper.
        A refusal goes to ``refuse``.
        """
        changes = {"broadcast_attempts": F("broadcast_attempts") + 1, "updated_at": timezone.now()}
        if reply.outcome not in _ACCEPTING and reply.outcome not in REFUSALS:
            changes["detail"] = reply.detail[:1000]
        type(self).objects.filter(pk=self.pk).update(**changes)
        if reply.outcome in _ACCEPTING:
            return self.mark_accepted(accepted_state(reply.outcome), reply.detail)
        if reply.outcome in REFUSALS:
            return self.refuse(reply, network)
        self._log(logging.WARNING, "broadcast_retry", detail=reply.detail[:200])
        return type(self).objects.filter(pk=self.pk).values_list("state", flat=True).first() or ""

    def refuse(self, reply: Reply, network: BsvNetwork) -> str:
        """The network refused the payment (``reply.outcome`` in REFUSALS): ``fail`` it, unless it holds it.

        Every refusal comes through here, from a broadcast or a status question. A double spend of a
        transaction the network holds is of a second copy sent at the same moment (two sends of one
        payment, by two workers: "input spent by" the payment itself), not of the payment: it is
        accepted; failing it would undo a payment that was made (a settlement's hours owed, and paid,
        again). Only that refusal costs the question (``_held``): a rejected transaction is invalid,
        so the network cannot hold it.
        """
        held = self._held(network) if reply.outcome == Outcome.DOUBLE_SPEND else None
        if held is not None:
            return self.mark_accepted(held, reply.detail)
        return self.fail(REFUSALS[reply.outcome], reply.detail or "refused by the network", network)

    def mark_accepted(self, state: str, detail: str) -> str:
        """The network has the payment: it is ``state`` (seen or confirmed) and its coins are spent."""
        with transaction.atomic():
            locked = type(self).objects.select_for_update().filter(pk=self.pk).values_list("state", flat=True).first()
            if locked is None or locked not in self.PENDING:
                self._log(logging.INFO, "accept_skipped", state=locked)
                return locked or ""
            self.accept_locked([self.pk], state, detail)
        self._log(logging.INFO, "accepted", state=state)
        return state

    @classmethod
    def accept_locked(
        cls, ids: list[int], state: str, detail: str, was: Iterable[str] | None = None, counted_try: bool = False
    ) -> int:
        """mark_accepted's writes for many, inside the caller's transaction: UPDATE the rows still ``was``
        (pending by default) and return how many moved; their coins are spent, their change confirmed with them.

        ``counted_try``: the reply was to a broadcast, counted as record_reply counts it. The caller
        holds the rows' locks, or rolls back when fewer moved than it asked for.
        """
        now = timezone.now()
        changes = cls.accepted_changes(state, now)
        if counted_try:
            changes.update(broadcast_attempts=F("broadcast_attempts") + 1, updated_at=now)
        payments = cls.objects.filter(bulk.among("pk", ids))
        moved = payments.filter(state__in=cls.PENDING if was is None else was).update(
            state=state, detail=detail[:1000], **changes
        )
        Utxo.objects.filter(bulk.among(f"{cls.COIN_LINK}_id", ids)).update(state=Utxo.State.SPENT)
        if state == PaymentState.CONFIRMED:
            Utxo.objects.filter(txid__in=payments.values("txid")).update(confirmed=True)
        cls.on_accepted(ids, state, now)
        return moved

    def fail(self, state: str, detail: str, network: BsvNetwork) -> str:
        """The network refused the payment for good: its kind undoes it (``on_failed``); returns the state.

        Locks in the lock order (the payer's wallet first, ``lock_payer``), then the row. After the
        commit the wallet's coins are resynced: the network says which still exist.
        """
        payment = type(self).objects.filter(pk=self.pk).first()  # who pays, whatever the caller loaded
        if payment is None:
            return ""
        with transaction.atomic():
            wallet = payment.lock_payer()
            locked = type(self).objects.select_for_update().filter(pk=self.pk).first()
            if locked is None or locked.state not in self.PENDING:
                self._log(logging.INFO, "fail_skipped", state=locked and locked.state)
                return locked.state if locked else ""
            if locked.drop_on_failure():
                locked.delete()
                self._log(logging.INFO, "claim_refused", state=state, detail=detail[:200])
                return ""
            locked.state, locked.detail = state, detail[:1000]
            locked.save(update_fields=["state", "detail", "updated_at"])
            locked.on_failed()
        self._log(logging.ERROR, "failed", state=state, detail=detail[:200])
        if wallet is not None:
            wallet.resync_quietly(network)
        return state

    def forget_coins(self) -> None:
        """A refused payment's coins and change never existed on the network: forget them (resync re-adds)."""
        Utxo.objects.filter(**{self.COIN_LINK: self}).delete()
        Utxo.objects.filter(txid=self.txid).delete()

    def _log(self, level: int, event: str, **fields: object) -> None:
        """``<kind>_<event> <kind>=<id> key=value ...``: one shape of log line for every kind."""
        pairs = " ".join(f"{key}={value}" for key, value in fields.items())
        log.log(level, "%s_%s %s=%s %s", self.LOG_NAME, event, self.LOG_NAME, self.pk, pairs)

    def _held(self, network: BsvNetwork) -> str | None:
        """The accepted state if the network holds the transaction, else None (also when it cannot say)."""
        try:
            known = network.status(self.txid)
        except NetworkUnavailable:
            return None
        return accepted_state(known.outcome) if known.outcome in _ACCEPTING else None


_ACCEPTING = (Outcome.ACCEPTED, Outcome.CONFIRMED)
REFUSALS = {Outcome.REJECTED: PaymentState.REJECTED, Outcome.DOUBLE_SPEND: PaymentState.DOUBLE_SPEND}


def accepted_state(outcome: Outcome) -> str:
    return PaymentState.CONFIRMED if outcome == Outcome.CONFIRMED else PaymentState.SEEN


class Settlement(OutgoingPayment):
    """One payment from a household's wallet to the utility for its unsettled usage lines.

    Refused, it releases its usage lines, which are owed again and paid by the next run.
    """

    COIN_LINK = "reserved_by"
    LOG_NAME = "settlement"

    # No index of its own: settlement_household begins with it.
    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="settlements", db_index=False)
    period_start = models.DateTimeField(help_text="First hour paid (UTC).")
    period_end = models.DateTimeField(help_text="End of the last closed hour this run settled (UTC).")
    kwh = models.DecimalField("kWh", max_digits=15, decimal_places=6)
    eur = models.DecimalField("EUR", max_digits=15, decimal_places=6)
    quote = models.ForeignKey(PriceQuote, on_delete=models.PROTECT, related_name="settlements")
    satoshis = models.PositiveBigIntegerField()
    fee_satoshis = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "updated_at"], name="settlement_state"),
            models.Index(fields=["-created_at"], name="settlement_created"),
            models.Index(fields=["household", "-created_at"], name="settlement_household"),
        ]
        constraints = [
            # Signing is deterministic: after a refusal, the same coins and amount sign the same
            # transaction again. A txid is live in at most one settlement; failed ones stay as history.
            models.UniqueConstraint(
                fields=["txid"], condition=~Q(state__in=["rejected", "double_spend"]), name="settlement_live_txid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.household} {self.eur} EUR / {self.satoshis} sat ({self.state})"

    @classmethod
    def accepted_changes(cls, state: str, now: datetime) -> dict:
        return {"confirmed_at": now if state == PaymentState.CONFIRMED else None}

    def lock_payer(self) -> Wallet:
        """The wallet, then the household's meters (lock order): reopened usage lines are the meters' to price."""
        wallet = Wallet.objects.select_for_update().get(household_id=self.household_id)
        list(Meter.objects.select_for_update().filter(household_id=self.household_id).order_by("pk").values_list("pk"))
        return wallet

    def on_failed(self) -> None:
        """Its usage lines are released and owed again; its coins and change are forgotten; settlement.failed."""
        live = self.lines.filter(released=False)
        usage_ids = list(live.values_list("usage_id", flat=True))
        live.update(released=True)
        reopen_lines(usage_ids)
        self.forget_coins()
        row = {field: getattr(self, field) for field in WEBHOOK_FIELDS}
        emit("settlement.failed", self.household_id, settlement_event(row) | {"detail": self.detail[:200]})

    @classmethod
    def on_accepted(cls, ids: list[int], state: str, now: datetime) -> None:
        """settlement.confirmed for those this call confirmed (confirmed_at ``now``), not those confirmed before."""
        if state == PaymentState.CONFIRMED:
            rows = cls.objects.filter(pk__in=ids, state=state, confirmed_at=now).order_by("pk").values(*WEBHOOK_FIELDS)
            emit_many([("settlement.confirmed", row["household_id"], settlement_event(row)) for row in rows])


WEBHOOK_FIELDS = ("pk", "household_id", "state", "txid", "eur", "kwh", "satoshis", "period_start", "period_end")


def settlement_event(row: dict) -> dict:
    """A settlement as webhooks tell it (docs/webhooks.md): ids, state, amounts as decimal strings, instants in UTC."""
    return {
        "settlement_id": row["pk"],
        "household_id": row["household_id"],
        "state": row["state"],
        "txid": row["txid"],
        "eur": str(row["eur"]),
        "kwh": str(row["kwh"]),
        "satoshis": row["satoshis"],
        "period_start": row["period_start"],
        "period_end": row["period_end"],
    }


class SettlementLine(models.Model):
    """A usage line a settlement pays. A line is in at most one live settlement, ever."""

    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="lines")
    # No database constraint: the ledger is partitioned by hour on PostgreSQL (meters/0006), so its
    # primary key there is (id, hour_start) and a foreign key cannot point at id alone. The ORM keeps
    # PROTECT, and lines are only ever made from usage rows just read.
    usage = models.ForeignKey(
        HourlyUsage, on_delete=models.PROTECT, related_name="settlement_lines", db_constraint=False
    )
    # The usage line's household, copied when the line is made: the distribution key of a sharded
    # database (Citus), as on readings and usage lines. Not indexed: lines are read by settlement or usage.
    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="+", db_index=False)
    eur = models.DecimalField(max_digits=15, decimal_places=6)
    released = models.BooleanField(default=False, help_text="The settlement failed; the line was paid later.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["usage"], condition=Q(released=False), name="usage_paid_once"),
        ]

    def __str__(self) -> str:
        return f"{self.settlement_id}: usage {self.usage_id} {self.eur} EUR"


# --- The local ledger (BSV_NETWORK=local): what a node would hold, in our database. ---


class LedgerBlock(models.Model):
    height = models.PositiveIntegerField(unique=True)
    mined_at = models.DateTimeField()

    class Meta:
        ordering = ["-height"]

    def __str__(self) -> str:
        return f"block {self.height}"


class LedgerTransaction(models.Model):
    txid = models.CharField(max_length=64)
    raw = models.TextField()
    fee = models.BigIntegerField(default=0)
    is_faucet = models.BooleanField(default=False)
    block = models.ForeignKey(LedgerBlock, on_delete=models.PROTECT, null=True, blank=True, related_name="txs")
    accepted_at = models.DateTimeField()

    class Meta:
        ordering = ["-accepted_at"]
        # A constraint rather than unique=True: the field option adds a second (LIKE) index on
        # PostgreSQL that no query uses, and every transaction the ledger accepts would write it.
        constraints = [models.UniqueConstraint(fields=["txid"], name="ledger_tx_unique_txid")]

    def __str__(self) -> str:
        return self.txid


class LedgerOutput(models.Model):
    # No index of its own: ledger_output_unique begins with it.
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="outputs", db_index=False)
    vout = models.PositiveIntegerField()
    satoshis = models.PositiveBigIntegerField()
    locking_script = models.TextField(help_text="Hex.")
    address = models.CharField(max_length=64, blank=True)
    spent_by = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="spends"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["transaction", "vout"], name="ledger_output_unique")]
        # An index rather than db_index=True, which adds a LIKE index on PostgreSQL nobody uses.
        indexes = [models.Index(fields=["address"], name="ledger_output_address")]

    def __str__(self) -> str:
        return f"{self.transaction_id}:{self.vout} {self.satoshis} sat"


class CommunityPass(OutgoingPayment):
    """A payment that opens the community comparison for a while.

    Paid from a household's wallet with one click, or by a machine over HTTP 402 (``/api/v1/community``).
    A txid unlocks once: the unique txid makes a replayed or double-clicked payment find the pass it
    already bought instead of buying another.

    A household's pass opens the page to that household's login. A machine's pass opens the API to the
    bearer of its access token (``cpa_...``), issued once when the payment is redeemed: the transaction
    is public once broadcast, so it proves nothing about who is asking. Only the token's hash is kept;
    a new token (the payer proved its key, payments/passes.py) replaces the old one.
    """

    class Source(models.TextChoices):
        WALLET = "wallet", "Household wallet"
        X402 = "x402", "HTTP 402"

    COIN_LINK = "reserved_by_pass"
    LOG_NAME = "community_pass"

    household = models.ForeignKey(
        Household, on_delete=models.PROTECT, null=True, blank=True, related_name="community_passes"
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    txid = models.CharField(max_length=64, unique=True)
    satoshis = models.PositiveBigIntegerField(help_text="Paid to the utility.")
    fee_satoshis = models.PositiveBigIntegerField(default=0)
    payer = models.CharField(max_length=64, blank=True, help_text="Who paid, for HTTP 402 payments.")
    created_at = models.DateTimeField(auto_now_add=True)
    valid_until = models.DateTimeField()
    token_hash = models.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False, help_text="SHA-256 of the access token."
    )
    proof_signed_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the payer signed the last proof that replaced the token."
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "community passes"
        indexes = [
            models.Index(fields=["household", "-valid_until"], name="community_pass_household"),
            # The sweeper and the refresher look for passes still on their way to a block.
            models.Index(fields=["state", "created_at"], name="community_pass_state"),
        ]
        constraints = [
            # A household's pass is paid from its wallet; a machine's pass belongs to no household.
            models.CheckConstraint(
                condition=Q(source="wallet", household__isnull=False) | Q(source="x402", household__isnull=True),
                name="community_pass_source_matches_household",
            ),
            # A household opens its pass with its login; only a machine's pass has a bearer token.
            models.CheckConstraint(
                condition=Q(token_hash__isnull=True) | Q(source="x402"), name="community_pass_token_is_x402"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.household or self.payer or 'machine'}: {self.satoshis} sat until {self.valid_until:%Y-%m-%d}"

    def grants_access(self, now: datetime) -> bool:
        """Whether the pass opens the comparison at ``now``.

        A wallet pass counts from signing on (its coins are reserved and the sweeper sends it); a
        machine's payment counts only once the network has accepted it.
        """
        if self.valid_until <= now or self.state in self.FAILED:
            return False
        return self.source == self.Source.WALLET or self.state in self.ACCEPTED

    @classmethod
    def for_token(cls, token: str) -> CommunityPass | None:
        """The machine's pass this access token was issued for (live or not), if any."""
        if not token.startswith(ACCESS_TOKEN_PREFIX) or len(token) > 200:
            return None
        return cls.objects.filter(token_hash=hash_token(token), source=cls.Source.X402).first()

    # --- Its lifecycle's hooks (OutgoingPayment) ---------------------------------------------------

    @classmethod
    def accepted_changes(cls, state: str, now: datetime) -> dict:
        # A machine's claim may have waited for the network (503s, the sweeper): its access starts
        # when the network takes it, so the client gets all it paid for. (Old values: the row before the UPDATE.)
        restart = When(
            source=cls.Source.X402,
            state__in=[PaymentState.SIGNED, PaymentState.BROADCAST],
            then=Value(now + access_period(), output_field=models.DateTimeField()),
        )
        return {"valid_until": Case(restart, default=F("valid_until"))}

    @classmethod
    def sweepable(cls, now: datetime) -> QuerySet:
        # A machine's claim is sent by its own request (and its retries), never by the sweeper; a
        # wallet pass younger than SWEEP_AFTER may still be on its way from the click that bought it.
        return cls.objects.filter(source=cls.Source.WALLET, state=PaymentState.SIGNED, created_at__lt=now - SWEEP_AFTER)

    @classmethod
    def abandon_stale(cls, now: datetime) -> int:
        """Drop machine claims still ``signed`` after SWEEP_AFTER: their request died while checking them.

        Dropping one lets the client's retry claim it afresh. Claims already sent are ``broadcast``,
        which the refresher follows.
        """
        stale = cls.objects.filter(source=cls.Source.X402, state=PaymentState.SIGNED, created_at__lt=now - SWEEP_AFTER)
        return stale.delete()[0]

    def lock_payer(self) -> Wallet | None:
        if self.source == self.Source.WALLET:
            return Wallet.objects.select_for_update().get(household_id=self.household_id)
        return None

    def drop_on_failure(self) -> bool:
        """A machine's claim the network never accepted bought nothing: it is dropped, so the same
        transaction may be offered again once it is valid (its parent arrived, say). One accepted
        earlier and refused now (a conflicting spend was mined) stays, failed, so its txid cannot unlock again.
        """
        return self.source == self.Source.X402 and self.state not in self.ACCEPTED

    def on_failed(self) -> None:
        """A wallet pass keeps its row as history and opens nothing; its coins and change are forgotten."""
        if self.source == self.Source.WALLET:
            self.forget_coins()


SWEEP_AFTER = timedelta(minutes=2)


def access_period() -> timedelta:
    return timedelta(days=settings.COMMUNITY_ACCESS_DAYS)


class ArcCallback(models.Model):
    """One delivery to ``POST /api/v1/arc/callback`` (payments/arc_callbacks.py), whatever became of it.

    Kept as the log staff read in the admin: what ARC said about which transaction, and what we did.
    ``digest`` (SHA-256 of txid, status and ARC's timestamp) is set only on deliveries that were let in,
    and is unique among them: the same message a second time is a replay, refused (``replayed``).
    """

    class Outcome(models.TextChoices):
        APPLIED = "applied", "Applied: the payment moved on"
        UNCHANGED = "unchanged", "Unchanged: the payment was there already"
        NOTED = "noted", "Noted: undecided status, polling follows it"
        UNKNOWN_TXID = "unknown_txid", "No payment of ours has this txid"
        UNAUTHORIZED = "unauthorized", "Refused: missing or wrong token"
        STALE = "stale", "Refused: timestamp too old or in the future"
        REPLAYED = "replayed", "Refused: delivered before"
        MALFORMED = "malformed", "Refused: not a callback body"

    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    txid = models.CharField(max_length=64, blank=True, db_index=True)
    tx_status = models.CharField("ARC status", max_length=40, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="ARC's timestamp of the status.")
    block_height = models.PositiveBigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=15, choices=Outcome.choices)
    detail = models.CharField(max_length=300, blank=True)
    payment_kind = models.CharField(max_length=20, blank=True, help_text="settlement or community_pass")
    payment_id = models.PositiveBigIntegerField(null=True, blank=True)
    body = models.TextField(blank=True, help_text="The start of the body as received.")
    digest = models.CharField(max_length=64, blank=True, editable=False)

    class Meta:
        ordering = ["-received_at"]
        verbose_name = "ARC callback"
        constraints = [
            models.UniqueConstraint(fields=["digest"], condition=~Q(digest=""), name="arc_callback_once"),
        ]

    def __str__(self) -> str:
        return f"{self.txid or 'no txid'} {self.tx_status or '-'}: {self.outcome}"


class Withdrawal(OutgoingPayment):
    """A household's remaining balance sent to an address it gave: closing its account, or a refund by staff.

    Every spendable coin of the wallet in, one output to the address, no change: the network fee comes
    out of the amount, and both were shown before the confirmation. Claimed like a settlement: under
    the wallet's lock, its coins reserved by a conditional UPDATE, and ``request_key`` (the confirmed
    preview's) unique, so two confirmations of one preview send once (payments/withdrawals.py).
    Sent, swept and followed to a block by payments/broadcast.py like every outgoing payment.
    Refused, it stays as failed history and its coins come back with the wallet's resync.
    """

    class Source(models.TextChoices):
        HOUSEHOLD = "household", "The household, closing its account"
        STAFF = "staff", "Staff"

    COIN_LINK = "reserved_by_withdrawal"
    LOG_NAME = "withdrawal"

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="withdrawals", db_index=False)
    source = models.CharField(max_length=10, choices=Source.choices)
    address = models.CharField(max_length=64, help_text="Where the balance goes, checked for BSV_NETWORK.")
    satoshis = models.PositiveBigIntegerField(help_text="Sent to the address (the balance less the fee).")
    fee_satoshis = models.PositiveBigIntegerField()
    request_key = models.CharField(max_length=64, unique=True, editable=False, help_text="The confirmed preview's.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["state", "updated_at"], name="withdrawal_state"),
            models.Index(fields=["household", "-created_at"], name="withdrawal_household"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["txid"], condition=~Q(state__in=["rejected", "double_spend"]), name="withdrawal_live_txid"
            ),
            # The backstop of the wallet's lock: one withdrawal on its way per household at a time.
            models.UniqueConstraint(
                fields=["household"],
                condition=Q(state__in=["signed", "broadcast", "seen"]),
                name="withdrawal_one_pending_per_household",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.household}: {self.satoshis} sat to {self.address} ({self.state})"

    @classmethod
    def accepted_changes(cls, state: str, now: datetime) -> dict:
        return {"confirmed_at": now if state == PaymentState.CONFIRMED else None}

    def lock_payer(self) -> Wallet:
        return Wallet.objects.select_for_update().get(household_id=self.household_id)

    def on_failed(self) -> None:
        """Its coins are forgotten (the resync brings back those that still exist); withdrawal.failed."""
        self.forget_coins()
        row = {field: getattr(self, field) for field in WITHDRAWAL_FIELDS}
        emit("withdrawal.failed", self.household_id, withdrawal_event(row) | {"detail": self.detail[:200]})

    @classmethod
    def on_accepted(cls, ids: list[int], state: str, now: datetime) -> None:
        """withdrawal.confirmed for those this call confirmed."""
        if state == PaymentState.CONFIRMED:
            rows = (
                cls.objects.filter(pk__in=ids, state=state, confirmed_at=now).order_by("pk").values(*WITHDRAWAL_FIELDS)
            )
            emit_many([("withdrawal.confirmed", row["household_id"], withdrawal_event(row)) for row in rows])


WITHDRAWAL_FIELDS = ("pk", "household_id", "state", "txid", "address", "satoshis", "fee_satoshis", "created_at")


def withdrawal_event(row: dict) -> dict:
    """A withdrawal as webhooks tell it (docs/webhooks.md)."""
    return {
        "withdrawal_id": row["pk"],
        "household_id": row["household_id"],
        "state": row["state"],
        "txid": row["txid"],
        "address": row["address"],
        "satoshis": row["satoshis"],
        "fee_satoshis": row["fee_satoshis"],
        "created_at": row["created_at"],
    }
