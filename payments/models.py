"""Wallets, coins, prices and settlements; plus the local ledger's own tables.

Lock order, extending meters/models.py: the Wallet row first, then the household's Meter rows,
then usage lines and coins. Ingest never takes a wallet lock, so the two never wait on each other
in a circle.
"""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.db.models import Q

from meters.models import HourlyUsage, Household, hash_token

ACCESS_TOKEN_PREFIX = "cpa_"  # noqa: S105 (a prefix, not a secret): energypay/logging.py redacts cpa_... tokens


class Wallet(models.Model):
    """A household's custodial wallet. Its key derives from WALLET_MASTER_KEY and is never stored."""

    household = models.OneToOneField(Household, on_delete=models.PROTECT, related_name="wallet")
    derivation_index = models.PositiveIntegerField(unique=True, help_text="m/44'/236'/0'/0/<index>")
    address = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["household"]

    def __str__(self) -> str:
        return f"{self.household}: {self.address}"


class Utxo(models.Model):
    """A coin the wallet can spend, with the raw transaction that made it (signing needs it)."""

    class State(models.TextChoices):
        AVAILABLE = "available", "Available"
        RESERVED = "reserved", "Reserved by a payment"
        SPENT = "spent", "Spent"

    wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="utxos")
    txid = models.CharField(max_length=64)
    vout = models.PositiveIntegerField()
    satoshis = models.PositiveBigIntegerField()
    raw_parent = models.TextField(help_text="Hex of the transaction that created this output.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.AVAILABLE)
    confirmed = models.BooleanField(default=False)
    reserved_by = models.ForeignKey(
        "Settlement", on_delete=models.PROTECT, null=True, blank=True, related_name="inputs"
    )
    # A community pass bought from the wallet reserves its coins here; a coin is reserved by at most
    # one payment, and both kinds of payment pick only available coins under the wallet's lock.
    reserved_by_pass = models.ForeignKey(
        "CommunityPass", on_delete=models.PROTECT, null=True, blank=True, related_name="inputs"
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
                condition=Q(reserved_by__isnull=True) | Q(reserved_by_pass__isnull=True),
                name="utxo_reserved_by_one_payment",
            ),
        ]
        indexes = [
            models.Index(fields=["wallet", "state"], name="utxo_wallet_state"),
            models.Index(fields=["wallet", "created_at"], name="utxo_wallet_created"),
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


class Settlement(models.Model):
    """One payment from a household's wallet to the utility for its unsettled usage lines."""

    class State(models.TextChoices):
        SIGNED = "signed", "Signed"
        BROADCAST = "broadcast", "Broadcast"
        SEEN = "seen", "Seen on the network"
        CONFIRMED = "confirmed", "Confirmed"
        REJECTED = "rejected", "Rejected"
        DOUBLE_SPEND = "double_spend", "Double spend"

    PENDING = (State.SIGNED, State.BROADCAST, State.SEEN)
    FAILED = (State.REJECTED, State.DOUBLE_SPEND)

    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="settlements")
    period_start = models.DateTimeField(help_text="First hour paid (UTC).")
    period_end = models.DateTimeField(help_text="End of the last closed hour this run settled (UTC).")
    kwh = models.DecimalField("kWh", max_digits=15, decimal_places=6)
    eur = models.DecimalField("EUR", max_digits=15, decimal_places=6)
    quote = models.ForeignKey(PriceQuote, on_delete=models.PROTECT, related_name="settlements")
    satoshis = models.PositiveBigIntegerField()
    fee_satoshis = models.PositiveBigIntegerField()
    txid = models.CharField(max_length=64)
    raw_tx = models.TextField()
    state = models.CharField(max_length=15, choices=State.choices, default=State.SIGNED)
    detail = models.TextField(blank=True, help_text="What the network last said.")
    broadcast_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
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


class SettlementLine(models.Model):
    """A usage line a settlement pays. A line is in at most one live settlement, ever."""

    settlement = models.ForeignKey(Settlement, on_delete=models.PROTECT, related_name="lines")
    usage = models.ForeignKey(HourlyUsage, on_delete=models.PROTECT, related_name="settlement_lines")
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
    txid = models.CharField(max_length=64, unique=True)
    raw = models.TextField()
    fee = models.BigIntegerField(default=0)
    is_faucet = models.BooleanField(default=False)
    block = models.ForeignKey(LedgerBlock, on_delete=models.PROTECT, null=True, blank=True, related_name="txs")
    accepted_at = models.DateTimeField()

    class Meta:
        ordering = ["-accepted_at"]

    def __str__(self) -> str:
        return self.txid


class LedgerOutput(models.Model):
    transaction = models.ForeignKey(LedgerTransaction, on_delete=models.PROTECT, related_name="outputs")
    vout = models.PositiveIntegerField()
    satoshis = models.PositiveBigIntegerField()
    locking_script = models.TextField(help_text="Hex.")
    address = models.CharField(max_length=64, blank=True, db_index=True)
    spent_by = models.ForeignKey(
        LedgerTransaction, on_delete=models.PROTECT, null=True, blank=True, related_name="spends"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["transaction", "vout"], name="ledger_output_unique")]

    def __str__(self) -> str:
        return f"{self.transaction_id}:{self.vout} {self.satoshis} sat"


class CommunityPass(models.Model):
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

    State = Settlement.State
    PENDING = Settlement.PENDING
    FAILED = Settlement.FAILED
    ACCEPTED = (Settlement.State.SEEN, Settlement.State.CONFIRMED)

    household = models.ForeignKey(
        Household, on_delete=models.PROTECT, null=True, blank=True, related_name="community_passes"
    )
    source = models.CharField(max_length=10, choices=Source.choices)
    txid = models.CharField(max_length=64, unique=True)
    raw_tx = models.TextField()
    satoshis = models.PositiveBigIntegerField(help_text="Paid to the utility.")
    fee_satoshis = models.PositiveBigIntegerField(default=0)
    payer = models.CharField(max_length=64, blank=True, help_text="Who paid, for HTTP 402 payments.")
    state = models.CharField(max_length=15, choices=Settlement.State.choices, default=Settlement.State.SIGNED)
    detail = models.TextField(blank=True, help_text="What the network last said.")
    broadcast_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, help_text="Signed, or last sent to the network.")
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
