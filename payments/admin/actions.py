"""What the payments pages' actions share: a cap on the rows per action, the network, and "retry now"."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from django.contrib import messages
from django.db import DatabaseError
from django.db.models import QuerySet
from django.utils import timezone

from meters.adminkit import NoEditing, Operate, plural
from meters.audit import record_action
from meters.models import HourlyUsage, Household
from payments import figures
from payments.broadcast import send_one
from payments.models import Settlement
from payments.networks import BsvNetwork, get_network
from payments.settlement import settle_household

log = logging.getLogger(__name__)

# Actions run in the request: each selected household signs and broadcasts, each wallet asks the network.
MAX_PER_ACTION = 100
PAID = (Settlement.State.BROADCAST, Settlement.State.SEEN, Settlement.State.CONFIRMED)


def households_owing(household_ids: set[int], period_end: datetime) -> list[int]:
    owing = HourlyUsage.objects.filter(figures.owed(before=period_end), household_id__in=household_ids)
    return sorted(set(owing.values_list("household_id", flat=True)))


class ReadOnlyWithActions(Operate, NoEditing):
    """No page edits a row; the actions move money, so they need the "operate" permission."""

    def network(self) -> BsvNetwork:
        return get_network()

    def selected_rows(self, request, queryset: QuerySet) -> list | None:
        """The selected rows, or None (with a message) when there are more than one action should handle."""
        rows = list(queryset.order_by("pk")[: MAX_PER_ACTION + 1])
        if len(rows) > MAX_PER_ACTION:
            self.message_user(request, f"Select at most {MAX_PER_ACTION} rows; nothing was done.", messages.ERROR)
            return None
        return rows

    def audit_retry(self, request, household: Household, outcome: str, settlement_id: int | None) -> None:
        """The audit trail's entry for one household retried by hand: who, when, and how it ended."""
        summary = f"Retried payment now: {outcome}"
        record_action(household, "settlement.retry", summary, actor=request.user, settlement_id=settlement_id)

    def retry_households(self, request, household_ids: set[int]) -> None:
        """Settle the households that owe something now and broadcast what was signed; report the outcomes."""
        now = timezone.now()
        period_end = figures.closed_period_end(now)
        owing = households_owing(household_ids, period_end)
        if not owing:
            self.message_user(request, "Nothing to retry: no selected household owes anything.", messages.INFO)
            return
        network = self.network()
        tally: Counter[str] = Counter()
        households = Household.objects.in_bulk(owing)
        for household_id in owing:
            settlement_id = None
            try:
                result = settle_household(household_id, period_end, now)
            except DatabaseError:
                # A concurrent run claimed the same lines or coins; it rolled back and paid nothing.
                log.warning("admin_retry_conflict household=%s", household_id, exc_info=True)
                outcome = "busy"
            else:
                settlement_id = result.settlement_id
                outcome = result.status if settlement_id is None else send_one(Settlement, settlement_id, network)
            tally[outcome] += 1
            self.audit_retry(request, households[household_id], outcome, settlement_id)
        paid = sum(tally[state] for state in PAID)
        parts = [
            f"{paid} paid",
            f"{tally['arrears']} still in arrears (the wallet cannot pay)",
            f"{tally[Settlement.State.SIGNED]} signed but not yet accepted (the sweeper sends them again)",
            f"{tally[Settlement.State.REJECTED] + tally[Settlement.State.DOUBLE_SPEND]} refused by the network",
            f"{tally['deferred']} deferred (no current BSV/EUR price)",
            f"{tally['nothing']} with less than a satoshi to pay",
            f"{tally['busy']} busy with another run (try again)",
        ]
        text = f"Retried {plural(len(owing), 'household')}: {', '.join(p for p in parts if not p.startswith('0 '))}."
        skipped = len(household_ids) - len(owing)
        if skipped:
            text += f" Skipped {skipped} that owed nothing."
        self.message_user(request, text, messages.SUCCESS if paid == len(owing) else messages.WARNING)
