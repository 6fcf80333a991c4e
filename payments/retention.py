"""Retention for the payments tables that grow with time: price quotes and the local ledger's spent history.

Nothing money refers to is ever deleted: a quote a settlement was priced with stays as long as the
settlement (its foreign key protects it too), and a ledger transaction whose txid a settlement or a
community pass carries stays, with its unspent outputs. What goes is what nobody can ask about again.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef

from lib.retention import delete_in_batches, older_than
from payments.figures import newest_quote
from payments.models import (
    ArcCallback,
    CommunityPass,
    LedgerBlock,
    LedgerOutput,
    LedgerTransaction,
    PriceQuote,
    Settlement,
)


def prunable_quotes(now: datetime, days: int):
    """Quotes fetched more than ``days`` days ago that no settlement used; never the newest.

    PRICE_MAX_AGE bounds the cutoff too, so a quote a settlement may still take is never a candidate,
    whatever the two settings say.
    """
    cutoff = min(older_than(now, days), now - settings.PRICE_MAX_AGE)
    rows = PriceQuote.objects.filter(fetched_at__lt=cutoff).exclude(
        Exists(Settlement.objects.filter(quote=OuterRef("pk")))
    )
    newest = newest_quote(now)
    return rows if newest is None else rows.exclude(pk=newest.pk)


def prune_quotes(now: datetime, days: int, batch_size: int) -> int:
    return delete_in_batches(prunable_quotes(now, days), batch_size)


def _carried_by_a_payment():
    return Exists(Settlement.objects.filter(txid=OuterRef("txid"))) | Exists(
        CommunityPass.objects.filter(txid=OuterRef("txid"))
    )


def prune_ledger(now: datetime, days: int, batch_size: int) -> dict[str, int]:
    """Delete the local ledger's history older than ``days`` days that no check can need again.

    1. spent outputs whose spending transaction was mined before the cutoff: a node forgets spent
       outputs too (a later spend of one is refused as "missing inputs", as a node refuses it), and
       unconfirmed chains never reach them;
    2. transactions mined before the cutoff with no output left and none spent by them, whose txid
       no settlement or pass carries (status questions about a payment always find their answer);
    3. blocks mined before the cutoff that hold no transaction left, never the tip (confirmations
       count from the tip's height, which stays).
    """
    cutoff = older_than(now, days)
    outputs = LedgerOutput.objects.filter(spent_by__block__mined_at__lt=cutoff)
    transactions = (
        LedgerTransaction.objects.filter(block__mined_at__lt=cutoff)
        .exclude(Exists(LedgerOutput.objects.filter(transaction=OuterRef("pk"))))
        .exclude(Exists(LedgerOutput.objects.filter(spent_by=OuterRef("pk"))))
        .exclude(_carried_by_a_payment())
    )
    blocks = LedgerBlock.objects.filter(mined_at__lt=cutoff).exclude(
        Exists(LedgerTransaction.objects.filter(block=OuterRef("pk")))
    )
    tip = LedgerBlock.objects.order_by("-height").values_list("pk", flat=True).first()
    if tip is not None:
        blocks = blocks.exclude(pk=tip)
    return {
        "outputs": delete_in_batches(outputs, batch_size),
        "transactions": delete_in_batches(transactions, batch_size),
        "blocks": delete_in_batches(blocks, batch_size),
    }


def prune_arc_callbacks(now: datetime, days: int, batch_size: int) -> int:
    """Delete the ARC callback log's rows older than ``days`` days.

    The log is history, not money: the payments hold their own states. Rows younger than
    ARC_CALLBACK_MAX_AGE are always kept (their digests refuse replays), whatever ``days`` says.
    """
    cutoff = min(older_than(now, days), now - settings.ARC_CALLBACK_MAX_AGE)
    return delete_in_batches(ArcCallback.objects.filter(received_at__lt=cutoff), batch_size)
