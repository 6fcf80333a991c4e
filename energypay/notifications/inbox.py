"""From events to notifications, in the transaction of the change (called by energypay.eventhook.record).

Which events a household is told of, and the event each notification is keyed on (its ``key``,
unique per household: a second delivery of the same event writes nothing):

| event (docs/webhooks.md)     | notification        | key                                   |
|------------------------------|---------------------|---------------------------------------|
| deposit.received (unconfirmed) | deposit.received  | the deposit's txid                    |
| deposit.confirmed            | deposit.confirmed   | the deposit's txid                    |
| household.arrears_started    | arrears.started     | the instant the episode was found     |
| household.arrears_cleared    | arrears.cleared     | the same instant (the episode it ends) |
| settlement.failed            | (none: remembered in PaymentTrouble) |                      |
| settlement.confirmed, after a failure | payment.recovered | the confirmed settlement        |

A deposit first seen already in a block is told once, as confirmed. The hot path is a batch of
settlements confirmed: it costs one query (the households with a refused payment among them).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from datetime import datetime
from functools import reduce

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from energypay.notifications import kinds
from energypay.notifications.models import Notification, PaymentTrouble, preferences
from lib.money import satoshis_to_eur
from payments.figures import newest_quote

Wanted = tuple[int, str, str, dict]  # household id, kind, key, params


def record(items: Iterable[tuple[str, int | None, dict]]) -> int:
    """Write the notifications ``items`` call for, in the caller's transaction; returns how many were asked for."""
    wanted: list[Wanted] = []
    failed: dict[int, int] = {}
    confirmed: list[tuple[int, dict]] = []
    for code, household_id, data in items:
        if household_id is None:
            continue
        if code == "deposit.received" and not data.get("confirmed"):
            wanted.append((household_id, kinds.DEPOSIT_RECEIVED, f"deposit.received:{data['txid']}", _deposit(data)))
        elif code == "deposit.confirmed":
            wanted.append((household_id, kinds.DEPOSIT_CONFIRMED, f"deposit.confirmed:{data['txid']}", _deposit(data)))
        elif code == "household.arrears_started":
            key = f"arrears.started:{_instant(data['started_at'])}"
            params = {"arrears_eur": str(data["arrears_eur"]), "unpaid_since": _instant(data["unpaid_since"])}
            wanted.append((household_id, kinds.ARREARS_STARTED, key, params))
        elif code == "household.arrears_cleared":
            key = f"arrears.cleared:{_instant(data['arrears_started_at'])}"
            wanted.append((household_id, kinds.ARREARS_CLEARED, key, {}))
        elif code == "settlement.failed":
            failed[household_id] = max(failed.get(household_id, 0), data["settlement_id"])
        elif code == "settlement.confirmed":
            confirmed.append((household_id, data))
    if not (wanted or failed or confirmed):
        return 0
    now = timezone.now()
    with transaction.atomic(savepoint=False):
        if confirmed:
            wanted += _recovered(confirmed)
        if failed:
            _remember_failures(failed, now)
        return _write(wanted, now)


def _deposit(data: dict) -> dict:
    return {"txid": data["txid"], "satoshis": int(data["satoshis"])}


def _instant(value: datetime | str) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _remember_failures(failed: dict[int, int], now: datetime) -> None:
    """The household has a refused payment: the newest one, which only a later settlement can make good."""
    # Two statements however many households failed (a network outage fails them all at once): an
    # older trouble gives way to the newer one, which is then written where none is left.
    PaymentTrouble.objects.filter(_older_than(failed.items())).delete()
    PaymentTrouble.objects.bulk_create(
        [PaymentTrouble(household_id=hid, settlement_id=sid, failed_at=now) for hid, sid in failed.items()],
        ignore_conflicts=True,
    )


def _older_than(settlements: Iterable[tuple[int, int]]) -> Q:
    """Troubles of each (household, settlement) pair's household about a settlement older than it."""
    return reduce(operator.or_, (Q(household_id=hid, settlement_id__lt=sid) for hid, sid in settlements), Q(pk=None))


def _recovered(confirmed: list[tuple[int, dict]]) -> list[Wanted]:
    """payment.recovered for a settlement confirmed after its household's refused one; that trouble is over."""
    troubles = dict(
        PaymentTrouble.objects.filter(household_id__in={hid for hid, _ in confirmed}).values_list(
            "household_id", "settlement_id"
        )
    )
    if not troubles:
        return []
    told: dict[int, Wanted] = {}
    for hid, data in confirmed:
        if hid in troubles and data["settlement_id"] > troubles[hid]:
            key = f"payment.recovered:{data['settlement_id']}"
            params = {"eur": str(data["eur"]), "settlement_id": data["settlement_id"]}
            told.setdefault(hid, (hid, kinds.PAYMENT_RECOVERED, key, params))
    if told:
        PaymentTrouble.objects.filter(
            _older_than((hid, params["settlement_id"]) for hid, (_, _, _, params) in told.items())
        ).delete()
    return list(told.values())


def _write(wanted: list[Wanted], now: datetime) -> int:
    if not wanted:
        return 0
    chosen = preferences(sorted({hid for hid, *_ in wanted}))
    quote = newest_quote(now) if any(kind in kinds.DEPOSIT_KINDS for _, kind, _, _ in wanted) else None
    rows = []
    for hid, kind, key, params in wanted:
        if kind in kinds.DEPOSIT_KINDS and quote is not None:
            params = params | {"eur": str(satoshis_to_eur(params["satoshis"], quote.bsv_eur))}
        wants = chosen[(hid, kind)]
        rows.append(
            Notification(
                household_id=hid,
                kind=kind,
                key=key,
                params=params,
                badge=wants["badge"],
                created_at=now,
                next_attempt_at=now if wants["email"] else None,
            )
        )
    # ignore_conflicts: the same event delivered again (a retried sync, two workers) finds its row there.
    Notification.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)
