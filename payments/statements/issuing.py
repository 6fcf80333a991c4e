"""Issuing monthly statements: each household's local calendar month, exactly once, numbered without gaps.

Beat's ``issue_due_statements`` (hourly) finds the months that closed at least
STATEMENT_ISSUE_DELAY_HOURS ago by each household's clock and still lack a statement (``due``), and
issues them a chunk of households at a time (``issue_chunk``), as do ``manage.py issue_statements``
and the household admin's action. Per chunk:

1. read, outside any lock: the households, their month's ledger grouped (payments.statements.lines),
   the settlements that paid it and the wallets at the month's end (payments.statements.paid);
2. compose each statement's lines in Python;
3. in one transaction: lock the series' counter for the year (the only row issuing locks, so every
   issuer of the series takes its turn here), leave out the households whose statement a concurrent
   issuer committed meanwhile, take that many numbers, insert the statements, their lines and
   payments, queue their mails (the outbox) and call ``issued`` (the hook point, see below); commit.

The unique (household, month, revision) constraint is the backstop: if an insert ever met a
statement the re-check missed, the whole chunk would roll back, numbers included, and nothing would be
issued twice. A crash anywhere before the COMMIT leaves nothing; a rerun issues what is still missing.

A reading that changes a closed month later is billed by a corrective note (payments.statements.corrections).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from lib.money import satoshis_to_eur
from lib.periods import add_months, first_of_month, local_date, local_month_bounds
from meters import minimum_tax
from meters.hooks import emit_many, load_hook
from meters.models import Household
from payments.statements import lines as ledger
from payments.statements import spain
from payments.statements.mail import queue_deliveries
from payments.statements.minimum import with_true_up
from payments.statements.models import Series, Statement, StatementLine, StatementPayment, StatementWithdrawal
from payments.statements.numbering import Counter as NumberCounter
from payments.statements.paid import MonthEndBalances, Paid, month_end_balances, month_payments, month_withdrawals
from payments.statements.verifactu.records import record_issued

log = logging.getLogger(__name__)

CHUNK = 200  # households per transaction


class MonthNotClosed(ValueError):
    """The month has not ended yet in the household's time zone: there is nothing final to state."""


@dataclass(frozen=True)
class Due:
    """Households of one time zone whose statement for ``month`` is due and missing."""

    month: date
    tz: str
    household_ids: list[int]


def closed_months(now: datetime, tz: str, count: int) -> list[date]:
    """The last ``count`` months of ``tz`` that ended STATEMENT_ISSUE_DELAY_HOURS or more ago, newest first."""
    delay = timedelta(hours=settings.STATEMENT_ISSUE_DELAY_HOURS)
    month = add_months(first_of_month(local_date(now, tz)), -1)
    if local_month_bounds(month, tz)[1] + delay > now:
        month = add_months(month, -1)
    return [add_months(month, -n) for n in range(count)]


def due(now: datetime, household_ids: Iterable[int] | None = None) -> list[Due]:
    """Statements due at ``now`` and not issued: the recent closed months (STATEMENT_RECENT_MONTHS) of every
    household that existed before the month ended. One query per time zone and month."""
    households = Household.objects.all()
    if household_ids is not None:
        households = households.filter(pk__in=list(household_ids))
    found = []
    for tz in sorted(set(households.values_list("timezone", flat=True).order_by())):
        for month in closed_months(now, tz, settings.STATEMENT_RECENT_MONTHS):
            ids = list(
                missing(households.filter(timezone=tz), month, *local_month_bounds(month, tz)).values_list(
                    "pk", flat=True
                )
            )
            if ids:
                found.append(Due(month, tz, ids))
    return found


def missing(households, month: date, start: datetime, end: datetime):
    """Those of ``households`` that existed before ``end``, were not closed by ``start`` and have no statement
    for ``month``. The month an account closes in gets its statement, the last one."""
    issued = Statement.objects.filter(household=OuterRef("pk"), month=month, revision=0)
    return households.filter(billed_in(start, end)).exclude(Exists(issued)).order_by("pk")


def billed_in(start: datetime, end: datetime) -> Q:
    """Households with a contract in [start, end): created before its end, not closed by its start."""
    return Q(created_at__lt=end) & (Q(closed_at__isnull=True) | Q(closed_at__gt=start))


def issue_due(now: datetime | None = None) -> Counter:
    """Issue every statement due now; returns how many were issued (for beat's task and the command)."""
    now = now or timezone.now()
    tally: Counter = Counter()
    for batch in due(now):
        tally.update(issue_households(batch.household_ids, batch.month, now=now))
    return tally


def issue_households(
    household_ids: Iterable[int], month: date, *, now: datetime | None = None, acting_user=None
) -> Counter:
    """Issue ``month``'s statement (the local month starting on ``month``'s first day) for each household
    that has none yet, chunk by chunk, per time zone. Returns counts: issued, already issued, not closed,
    no contract (created after the month, or closed before it)."""
    now = now or timezone.now()
    month = first_of_month(month)
    household_ids = list(dict.fromkeys(household_ids))
    zones = dict(Household.objects.filter(pk__in=household_ids).values_list("pk", "timezone"))
    by_tz: defaultdict[str, list[int]] = defaultdict(list)
    for pk in household_ids:  # in the caller's order: numbers follow it
        if pk in zones:
            by_tz[zones[pk]].append(pk)
    tally: Counter = Counter()
    for tz, ids in sorted(by_tz.items()):
        start, end = local_month_bounds(month, tz)
        if end > now:
            tally["not_closed"] += len(ids)
            continue
        with_contract = set(Household.objects.filter(billed_in(start, end), pk__in=ids).values_list("pk", flat=True))
        before = set(
            Statement.objects.filter(household_id__in=ids, month=month, revision=0).values_list(
                "household_id", flat=True
            )
        )
        tally["no_contract"] += len(set(ids) - with_contract)
        tally["already_issued"] += len(before)
        todo = [pk for pk in ids if pk in with_contract and pk not in before]
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start : start + CHUNK]
            try:
                issued = issue_chunk(chunk, month, now=now, acting_user=acting_user)
            except IntegrityError:
                # Another issuer's insert met ours (the re-check under the counter lock makes this rare):
                # the chunk rolled back, numbers included; once more, without what it issued.
                log.warning("statement_chunk_retry households=%d month=%s", len(chunk), month, exc_info=True)
                issued = issue_chunk(chunk, month, now=now, acting_user=acting_user)
            tally["issued"] += len(issued)
            tally["already_issued"] += len(chunk) - len(issued)
    return tally


def issue_chunk(household_ids: list[int], month: date, *, now: datetime, acting_user=None) -> list[Statement]:
    """Issue ``month``'s statement for those of the households (all of one time zone) that have none; the steps
    are the module's. Returns the statements issued."""
    order = {pk: position for position, pk in enumerate(household_ids)}
    households = sorted(
        Household.objects.filter(pk__in=household_ids).select_related("user"), key=lambda h: order[h.pk]
    )  # numbered in the caller's order
    if not households:
        return []
    tz = households[0].timezone
    if any(household.timezone != tz for household in households):
        raise ValueError("a chunk holds households of one time zone")
    start, end = local_month_bounds(month, tz)
    if end > now:
        raise MonthNotClosed(f"{month:%Y-%m} has not ended yet in {tz}")
    households = [
        household
        for household in households
        if household.created_at < end and (household.closed_at is None or household.closed_at > start)
    ]
    ids = [household.pk for household in households]
    groups = ledger.usage_groups(ids, start, end)
    versions = ledger.tariff_versions(group for household_groups in groups.values() for group in household_groups)
    payments = month_payments(ids, start, end)
    balances = month_end_balances(ids, end)
    withdrawals = month_withdrawals(households, start, end)
    drafts, true_ups = {}, {}
    for household in households:
        household_groups, true_ups[household.pk] = with_true_up(
            household, groups.get(household.pk, []), versions, start, end
        )
        drafts[household.pk] = ledger.compose(household_groups, versions)

    issue_date = local_date(now, settings.STATEMENT_TIME_ZONE)
    # A 2.0TD supply's bill content (docs/spain.md), read outside the locks like the lines, stored as it is now.
    bills = spain.bills(households, month, start, end, issue_date, drafts)
    series = Series.active_for(Series.Purpose.STATEMENT)
    with transaction.atomic(durable=True):
        counter = NumberCounter(series, issue_date.year)
        done = set(
            Statement.objects.filter(household_id__in=ids, month=month, revision=0).values_list(
                "household_id", flat=True
            )
        )
        todo = [household for household in households if household.pk not in done]
        if not todo:
            return []
        statements = [
            new_document(
                household,
                series,
                counter.year,
                number,
                kind=Statement.Kind.STATEMENT,
                month=month,
                bounds=(start, end),
                timezone_name=household.timezone,
                now=now,
                issue_date=issue_date,
                acting_user=acting_user,
            )
            for household, number in zip(todo, counter.take(len(todo)), strict=True)
        ]
        for statement in statements:
            content = drafts[statement.household_id]
            _fill(statement, content, settled_exact=content.settled_exact, month_total=content.total_eur)
            _fill_balance(statement, balances)
            statement.bill = bills.get(statement.household_id, {})
            count_payments(statement, payments.get(statement.household_id, []))
        statements = Statement.objects.bulk_create(statements)
        store_lines(statements, drafts)
        store_payments(statements, payments)
        store_withdrawals(statements, withdrawals)
        # The electricity tax's minimum, in the ledger exactly when its statement exists (meters/minimum_tax.py).
        minimum_tax.write([line for s in statements if (line := true_ups[s.household_id]) is not None])
        issued(statements, acting_user=acting_user)
    log.info(
        "statements_issued month=%s tz=%s count=%d first=%s last=%s",
        f"{month:%Y-%m}",
        tz,
        len(statements),
        statements[0].code,
        statements[-1].code,
    )
    return statements


def issued(statements: list[Statement], *, acting_user=None) -> None:
    """What goes with every issued statement or corrective note, in the transaction that inserts them.

    Their VERI*FACTU records are chained (payments.statements.verifactu.records: an alta each, under the
    issuer's chain lock, taken after the series counter's), their mails are queued (the outbox,
    payments.statements.mail), a ``statement.issued`` event goes to
    settings.EVENT_HOOK (webhooks, docs/webhooks.md), and ``STATEMENT_ISSUED_HOOK`` is
    called with them, when set: what a higher floor must write exactly when a statement exists, in
    this transaction and under the series counter's lock, so a crash leaves both or neither. What
    any of them raises rolls the statements back.
    """
    if settings.INVOICE_RECORDS_MODE == "verifactu":
        record_issued(statements, acting_user=acting_user)
    queue_deliveries(statements, requested_by=acting_user)
    emit_many(
        [
            (
                "statement.issued",
                statement.household_id,
                {
                    "statement_id": statement.pk,
                    "household_id": statement.household_id,
                    "number": statement.code,
                    "kind": statement.kind,
                    "corrects": statement.corrects.code if statement.corrects_id else None,
                    "period_start": statement.period_start.isoformat(),
                    "period_end": statement.period_end.isoformat(),
                    "total_eur": str(statement.total_eur),
                    "issued_at": statement.issued_at.isoformat(),
                },
            )
            for statement in statements
        ]
    )
    if path := settings.STATEMENT_ISSUED_HOOK:
        load_hook(path)(statements)


def new_document(
    household: Household,
    series: Series,
    year: int,
    number: int,
    *,
    kind: str,
    month: date,
    bounds: tuple[datetime, datetime],
    timezone_name: str,
    now: datetime,
    issue_date: date,
    acting_user,
    revision: int = 0,
    corrects: Statement | None = None,
) -> Statement:
    """A statement or corrective note's header: its number, period and who issued it to whom, as of now.

    The one place both kinds of document take their number text and their issuer and customer snapshots.
    """
    return Statement(
        series=series,
        year=year,
        number=number,
        code=series.number_text(year, number),
        kind=kind,
        revision=revision,
        corrects=corrects,
        household=household,
        month=month,
        period_start=bounds[0],
        period_end=bounds[1],
        timezone=timezone_name,
        language=statement_language(household),
        issued_at=now,
        issue_date=issue_date,
        issued_by=acting_user,
        issuer=issuer_snapshot(),
        customer=customer_snapshot(household),
    )


def _fill(statement: Statement, content: ledger.Content, *, settled_exact, month_total) -> None:
    """Copy ``content``'s figures onto ``statement``; ``month_total``: the month's documents, this one included."""
    statement.energy_kwh = content.energy_kwh
    statement.net_eur = content.net_eur
    statement.tax_eur = content.tax_eur
    statement.total_eur = content.total_eur
    statement.ledger_cost_eur = content.ledger_cost
    statement.ledger_tax_eur = content.ledger_tax
    statement.ledger_kwh = content.ledger_kwh
    statement.settled_eur = ledger.to_cent(settled_exact)
    statement.unsettled_eur = month_total - statement.settled_eur


def _fill_balance(statement: Statement, balances: MonthEndBalances) -> None:
    satoshis = balances.satoshis.get(statement.household_id, 0)
    statement.balance_at = balances.at
    statement.balance_satoshis = satoshis
    if balances.quote is not None:
        statement.balance_bsv_eur = balances.quote.bsv_eur
        statement.balance_eur = ledger.to_cent(satoshis_to_eur(satoshis, balances.quote.bsv_eur))


def store_lines(statements: list[Statement], contents: dict[int, ledger.Content]) -> None:
    StatementLine.objects.bulk_create(
        StatementLine(
            statement=statement,
            position=position,
            key=draft.key,
            kind=draft.kind,
            name=draft.name,
            quantity=draft.quantity,
            unit_price=draft.unit_price,
            tax_rate=draft.tax_rate,
            base_eur=draft.base_eur,
            exact_eur=draft.exact_eur,
            amount_eur=draft.amount_eur,
        )
        for statement in statements
        for position, draft in enumerate(contents[statement.household_id].lines, 1)
    )


def store_payments(statements: list[Statement], payments: dict[int, list[Paid]]) -> None:
    """The payments of each statement's month, and the settlement totals the statement shows."""
    rows = []
    for statement in statements:
        paid = payments.get(statement.household_id, [])
        rows += [
            StatementPayment(
                statement=statement,
                settlement_id=item.settlement_id,
                txid=item.txid,
                paid_at=item.paid_at,
                eur=item.eur,
                satoshis=item.satoshis,
            )
            for item in paid
        ]
    StatementPayment.objects.bulk_create(rows)


def store_withdrawals(statements: list[Statement], withdrawals: dict) -> None:
    StatementWithdrawal.objects.bulk_create(
        StatementWithdrawal(
            statement=statement,
            withdrawal=withdrawal,
            txid=withdrawal.txid,
            address=withdrawal.address,
            sent_at=withdrawal.created_at,
            satoshis=withdrawal.satoshis,
            fee_satoshis=withdrawal.fee_satoshis,
        )
        for statement in statements
        for withdrawal in withdrawals.get(statement.household_id, [])
    )


def count_payments(statement: Statement, paid: list[Paid]) -> None:
    statement.settlement_count = len(paid)
    statement.settled_satoshis = sum(item.satoshis for item in paid)


def issuer_snapshot() -> dict:
    return {
        "name": settings.STATEMENT_ISSUER_NAME,
        "tax_id": settings.STATEMENT_ISSUER_TAX_ID,
        "address": settings.STATEMENT_ISSUER_ADDRESS,
    }


def customer_snapshot(household: Household) -> dict:
    return {
        "household_id": household.pk,
        "name": household.name,
        "address": household.address,
        "email": household.user.email,
        "timezone": household.timezone,
        # The account holder's NIF/NIE/DNI and the supply point, where the household has them (docs/spain.md).
        "tax_id": getattr(household, "tax_id", "") or "",
        "cups": getattr(household, "cups", "") or "",
    }


def statement_language(household: Household) -> str:
    """The language a household's documents are written in: its own choice (the language switch)."""
    return household.language
