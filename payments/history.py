"""A wallet's history for people: money in (deposits) and money out (settlements, community passes).

The database has no "transaction" table for a wallet: deposits are the coins we hold from other
people's transactions, and everything we pay is a Settlement or a CommunityPass. Our own change
comes back as a coin too, carrying the txid of the payment that made it, so a coin is a deposit
only when its txid is none of the household's own payments.

Each entry also says what it was worth in EUR, and at which BSV/EUR price: a settlement at the quote
it was priced with (its EUR is what it paid, exactly); a deposit or a community pass at the newest
quote stored when it happened (none stored before it: no EUR, and the page says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Exists, Min, OuterRef, Q, Subquery, Sum
from django.utils.translation import gettext

from lib.money import satoshis_to_eur
from payments.models import CommunityPass, PriceQuote, Settlement, Utxo, Wallet
from payments.networks import explorer_url

LIMIT = 100


@dataclass(frozen=True)
class HistoryRow:
    kind: str  # deposit | settlement | community
    at: datetime
    txid: str
    satoshis: int  # received (deposit) or paid to the utility (settlement, community)
    fee_satoshis: int  # 0 for deposits: the sender paid it
    state: str  # deposits: "confirmed" or "unconfirmed"; payments: Settlement.State
    state_label: str
    settlement_id: int | None = None
    bsv_eur: Decimal | None = None  # the price it is valued at: the payment's own quote, else the one of its time
    eur: Decimal | None = None  # None: no quote stored at that time
    own_quote: bool = False  # a settlement's own quote, rather than the newest one stored at the time

    @property
    def incoming(self) -> bool:
        return self.kind == "deposit"

    @property
    def fee_eur(self) -> Decimal | None:
        return None if self.bsv_eur is None else satoshis_to_eur(self.fee_satoshis, self.bsv_eur)

    @property
    def explorer_url(self) -> str:
        """Where to look the transaction up (testnet, mainnet); empty for the local ledger and regtest."""
        return explorer_url(self.txid)


def wallet_history(wallet: Wallet, limit: int = LIMIT) -> list[HistoryRow]:
    """The newest ``limit`` entries of the wallet, newest first. Three queries, whatever the history's length.

    1. deposits: the wallet's coins grouped by txid (one deposit may pay the address twice), minus
       coins whose txid is one of the household's own settlements or community passes (change);
    2. the household's settlements (failed ones too: they are history, and show why a retry followed);
    3. the household's community passes paid from the wallet (HTTP 402 passes are paid by machines).
    Each query is limited on its own, so their merge holds at least the newest ``limit`` entries.
    """
    household_id = wallet.household_id
    # The newest quote stored at an instant; scanned backwards on the fetched_at index.
    quote_at = PriceQuote.objects.filter(fetched_at__lte=OuterRef("created_at")).order_by("-fetched_at", "-pk")
    own_settlement = Settlement.objects.filter(household_id=household_id, txid=OuterRef("txid"))
    own_pass = CommunityPass.objects.filter(household_id=household_id, txid=OuterRef("txid"))
    deposits = (
        Utxo.objects.filter(wallet=wallet)
        .filter(~Exists(own_settlement), ~Exists(own_pass))
        .values("txid")
        .annotate(
            satoshis=Sum("satoshis"),
            at=Min("created_at"),
            # Min over a boolean is not portable (PostgreSQL has bool_and instead): count instead.
            unconfirmed=Count("pk", filter=Q(confirmed=False)),
            # A deposit's coins come in one transaction, recorded at one sync: one quote for all of them.
            bsv_eur=Min(Subquery(quote_at.values("bsv_eur")[:1])),
        )
        .order_by("-at", "txid")[:limit]
    )
    rows = [
        HistoryRow(
            kind="deposit",
            at=deposit["at"],
            txid=deposit["txid"],
            satoshis=deposit["satoshis"],
            fee_satoshis=0,
            state="unconfirmed" if deposit["unconfirmed"] else "confirmed",
            state_label=gettext("Unconfirmed") if deposit["unconfirmed"] else gettext("Confirmed"),
            bsv_eur=deposit["bsv_eur"],
            eur=_eur(deposit["satoshis"], deposit["bsv_eur"]),
        )
        for deposit in deposits
    ]
    settlements = (
        Settlement.objects.filter(household_id=household_id)
        .select_related("quote")
        .only("pk", "created_at", "txid", "satoshis", "fee_satoshis", "state", "eur", "quote__bsv_eur")
    )
    rows += [
        HistoryRow(
            kind="settlement",
            at=settlement.created_at,
            txid=settlement.txid,
            satoshis=settlement.satoshis,
            fee_satoshis=settlement.fee_satoshis,
            state=settlement.state,
            state_label=settlement.get_state_display(),
            settlement_id=settlement.pk,
            bsv_eur=settlement.quote.bsv_eur,
            eur=settlement.eur,  # what it paid; its satoshis are this at its quote, half up
            own_quote=True,
        )
        for settlement in settlements.order_by("-created_at", "-pk")[:limit]
    ]
    passes = (
        CommunityPass.objects.filter(household_id=household_id, source=CommunityPass.Source.WALLET)
        .only("pk", "created_at", "txid", "satoshis", "fee_satoshis", "state")
        .annotate(bsv_eur=Subquery(quote_at.values("bsv_eur")[:1]))
    )
    rows += [
        HistoryRow(
            kind="community",
            at=community_pass.created_at,
            txid=community_pass.txid,
            satoshis=community_pass.satoshis,
            fee_satoshis=community_pass.fee_satoshis,
            state=community_pass.state,
            state_label=community_pass.get_state_display(),
            bsv_eur=community_pass.bsv_eur,
            eur=_eur(community_pass.satoshis, community_pass.bsv_eur),
        )
        for community_pass in passes.order_by("-created_at", "-pk")[:limit]
    ]
    # At the same instant a payment is newer than a deposit: it can only spend what already came in.
    rows.sort(key=lambda row: (row.at, not row.incoming), reverse=True)
    return rows[:limit]


def _eur(satoshis: int, bsv_eur: Decimal | None) -> Decimal | None:
    # SQLite hands a subquery's decimal back as it stored it; Decimal(str()) keeps it exact either way.
    return None if bsv_eur is None else satoshis_to_eur(satoshis, Decimal(str(bsv_eur)))


def reserved_satoshis(wallet: Wallet) -> int:
    """Coins held by payments being sent (settlements and community passes alike). One query.

    These coins are not in the balance (payments.wallets.balance_satoshis counts available coins),
    while the change those payments return already is.
    """
    total = Utxo.objects.filter(wallet=wallet, state=Utxo.State.RESERVED).aggregate(total=Sum("satoshis"))["total"]
    return total or 0
