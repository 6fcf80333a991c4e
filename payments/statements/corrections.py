"""Corrective notes: a closed month that changed after its statement was issued gets a new document with the difference.

A late reading (a true-up line for a settled hour), a price imported for an hour that had none, a
standing charge accrued late: the ledger of a closed month can still change, and an issued
statement never does. Beat's ``correct_statements`` (daily) compares, for the recent closed months
(STATEMENT_RECENT_MONTHS), the ledger's exact sums of each household's month against the sums its
documents covered (one grouped query each, per chunk of households); where they differ it composes
the month as the ledger has it now and subtracts, line by line, what the documents issued so far
said (payments.statements.lines.difference). Lines that changed become a corrective note in the
corrective series (``EPR-2026-000001``): a debit note when it adds money, a credit note when it
gives some back, referring to the month's statement. A change smaller than what the documents show
(a few micro-euros that round to the same cents) needs no note.

Each note is a factura rectificativa (docs/spain.md): typed by its cause, ``Statement.rectification_type``,
and by its method, always by differences (I) here, since a note carries only what changed. The daily
job's cause is a reading or a price that reached the ledger after issue: R4 ("resto"). Staff choose
another cause where they correct (``manage.py correct_statement``; a tax rate corrected after issue,
meters.tax_corrections, is R1).

Exactly once: the note is inserted under the corrective series' counter lock after re-reading the
month's documents; a concurrent corrector that got there first leaves nothing to correct, and the
unique (household, month, revision) constraint is the backstop.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import date, datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Sum
from django.utils import timezone
from django.utils.translation import gettext_noop

from lib.money import KWH_PLACES
from lib.periods import add_months, first_of_month, local_date
from meters import minimum_tax, tax_corrections
from meters.models import HourlyUsage, Household, TaxRule
from payments.figures import eur
from payments.statements import lines as ledger
from payments.statements.issuing import (
    count_payments,
    issued,
    new_document,
    store_lines,
    store_payments,
)
from payments.statements.minimum import with_true_up
from payments.statements.models import Series, Statement, StatementLine, StatementPayment
from payments.statements.numbering import Counter as NumberCounter
from payments.statements.paid import month_payments

log = logging.getLogger(__name__)

CHUNK = 500  # households whose sums are compared in one query
# The daily job's cause, in words (translated where a document is shown; staff write their own).
LATE_LEDGER_REASON = gettext_noop("A meter reading or a price received after the statement was issued")


class CorrectionRefused(ValueError):
    """A correction cannot be issued as asked (a cause that is not R1-R4, a method not built)."""


def check(
    now: datetime | None = None, *, household_ids: Iterable[int] | None = None, month: date | None = None
) -> Counter:
    """Issue the corrective notes the ledger calls for: of ``month`` if given, else of the recent closed months.

    Returns counts: months compared, changed in the ledger, corrected (a note issued).
    """
    now = now or timezone.now()
    originals = Statement.objects.filter(revision=0)
    if month is not None:
        originals = originals.filter(month=first_of_month(month))
    else:
        # Generous by a month: each household's recent months are decided by its own clock below.
        oldest = add_months(first_of_month(now.date()), -(settings.STATEMENT_RECENT_MONTHS + 1))
        originals = originals.filter(month__gte=oldest)
    if household_ids is not None:
        originals = originals.filter(household_id__in=list(household_ids))
    periods: defaultdict[tuple, list[int]] = defaultdict(list)
    for household_id, month_first, start, end in originals.order_by("household_id").values_list(
        "household_id", "month", "period_start", "period_end"
    ):
        if end <= now:
            periods[(month_first, start, end)].append(household_id)
    tally: Counter = Counter()
    for (month_first, start, end), ids in sorted(periods.items()):
        for first in range(0, len(ids), CHUNK):
            chunk = ids[first : first + CHUNK]
            tally["compared"] += len(chunk)
            for household_id in changed(chunk, month_first, start, end):
                tally["changed"] += 1
                try:
                    note = correct(household_id, month_first, now=now)
                except IntegrityError:
                    # A concurrent corrector inserted this revision first: its note stands; the next check re-compares.
                    log.warning("statement_correction_lost_race household=%s month=%s", household_id, month_first)
                    note = None
                if note is not None:
                    tally["corrected"] += 1
    return tally


def changed(household_ids: list[int], month: date, start: datetime, end: datetime) -> list[int]:
    """The households whose ledger for the month lost the exact sums their documents covered (two queries)."""
    now_sums = {
        row["household_id"]: (eur(row["cost"]), eur(row["tax"]), (row["kwh"] or ledger.ZERO))
        for row in HourlyUsage.objects.filter(
            household_id__in=household_ids, hour_start__gte=start, hour_start__lt=end, cost_eur__isnull=False
        )
        .values("household_id")
        .annotate(cost=Sum("cost_eur"), tax=Sum("tax_eur"), kwh=Sum("kwh"))
        .order_by()
    }
    covered = {
        row["household_id"]: (eur(row["cost"]), eur(row["tax"]), (row["kwh"] or ledger.ZERO))
        for row in Statement.objects.filter(household_id__in=household_ids, month=month)
        .values("household_id")
        .annotate(cost=Sum("ledger_cost_eur"), tax=Sum("ledger_tax_eur"), kwh=Sum("ledger_kwh"))
        .order_by()
    }
    nothing = (ledger.ZERO, ledger.ZERO, ledger.ZERO)
    return [h for h in household_ids if _rounded(now_sums.get(h, nothing)) != _rounded(covered.get(h, nothing))]


def _rounded(sums: tuple) -> tuple:
    cost, tax, kwh = sums
    return cost, tax, kwh.quantize(KWH_PLACES)


def correct(
    household_id: int,
    month: date,
    *,
    now: datetime | None = None,
    acting_user=None,
    rectification_type: str | None = None,
    reason: str = "",
) -> Statement | None:
    """Issue the corrective note the household's month needs now, if any; None when nothing shown has changed.

    ``rectification_type`` is its cause (R1-R4, docs/spain.md) and ``reason`` the cause in words; the
    note is by differences (I). Without a type, the cause is read from what changed (``_cause``): a tax rate
    corrected after issue is R1 with the correction's reason, anything else R4 ("a meter reading or a price
    received after the statement was issued").

    1. read the month's documents (the statement first) and compose the month from the ledger now;
    2. subtract what the documents said; nothing visible changed: no note;
    3. in one transaction under the corrective series' counter lock: re-read the month's last revision
       (another corrector may have issued meanwhile: then stop, the next check re-compares), take the
       next number, insert the note, its lines and the payments not listed before, queue its mail.
    """
    now = now or timezone.now()
    if rectification_type is not None and rectification_type not in Statement.RectificationType.values:
        raise CorrectionRefused(f"{rectification_type!r} is not a cause of rectification (R1, R2, R3, R4).")
    month = first_of_month(month)
    documents = list(Statement.objects.filter(household_id=household_id, month=month).order_by("revision"))
    if not documents:
        return None  # the statement comes first; issuing it covers everything so far
    original, last = documents[0], documents[-1]
    start, end = original.period_start, original.period_end
    household = Household.objects.select_related("user").get(pk=household_id)
    groups = ledger.usage_groups([household_id], start, end).get(household_id, [])
    versions = ledger.tariff_versions(groups)
    # The electricity tax's minimum as the month's kWh now call for it, less the true-ups already written.
    groups, true_up = with_true_up(household, groups, versions, start, end)
    current = ledger.compose(groups, versions)
    before = [_draft(line) for line in StatementLine.objects.filter(statement__in=documents).order_by("pk")]
    note = ledger.difference(current, before)
    if not note.lines:
        return None
    if rectification_type is None:
        rectification_type, found_reason = _cause(note, before)
        reason = reason or found_reason
    reason = (reason or "").strip()[:200] or LATE_LEDGER_REASON
    listed = set(StatementPayment.objects.filter(statement__in=documents).values_list("settlement_id", flat=True))
    paid = [
        p for p in month_payments([household_id], start, end).get(household_id, []) if p.settlement_id not in listed
    ]
    series = Series.active_for(Series.Purpose.CORRECTIVE)
    issue_date = local_date(now, settings.STATEMENT_TIME_ZONE)
    previous_total = sum((document.total_eur for document in documents), ledger.ZERO)

    with transaction.atomic(durable=True):
        counter = NumberCounter(series, issue_date.year)
        latest = Statement.objects.filter(household_id=household_id, month=month).aggregate(r=Max("revision"))["r"]
        if latest != last.revision:
            log.info(
                "statement_correction_skipped household=%s month=%s reason=corrected_meanwhile", household_id, month
            )
            return None
        (number,) = counter.take(1)
        statement = new_document(
            household,
            series,
            counter.year,
            number,
            kind=Statement.Kind.CORRECTIVE,
            revision=last.revision + 1,
            corrects=original,
            month=month,
            bounds=(start, end),
            timezone_name=original.timezone,
            now=now,
            issue_date=issue_date,
            acting_user=acting_user,
        )
        statement.rectification_type = rectification_type
        statement.rectification_method = Statement.RectificationMethod.DIFFERENCES
        statement.rectification_reason = reason
        statement.energy_kwh = note.energy_kwh
        statement.net_eur = note.net_eur
        statement.tax_eur = note.tax_eur
        statement.total_eur = note.total_eur
        statement.ledger_cost_eur = current.ledger_cost - sum((d.ledger_cost_eur for d in documents), ledger.ZERO)
        statement.ledger_tax_eur = current.ledger_tax - sum((d.ledger_tax_eur for d in documents), ledger.ZERO)
        statement.ledger_kwh = current.ledger_kwh - sum((d.ledger_kwh for d in documents), ledger.ZERO)
        statement.settled_eur = ledger.to_cent(current.settled_exact)
        statement.unsettled_eur = previous_total + note.total_eur - statement.settled_eur
        count_payments(statement, paid)
        statement.save()
        store_lines([statement], {household_id: note})
        store_payments([statement], {household_id: paid})
        minimum_tax.write([true_up] if true_up is not None else [])
        issued([statement], acting_user=acting_user)
    log.info(
        "statement_corrected household=%s month=%s note=%s corrects=%s type=%s total=%s",
        household_id,
        f"{month:%Y-%m}",
        statement.code,
        original.code,
        statement.rectification_type,
        statement.total_eur,
    )
    return statement


def _cause(note: ledger.Content, before: list[ledger.Draft]) -> tuple[str, str]:
    """The cause of a note the caller did not name: R1, with the correction's reason, when it brings in the tax
    line of a rate corrected after issue (meters/tax_corrections.py) that no document of the month had yet;
    otherwise R4, a reading or a price that reached the ledger late (a late reading taxed at a rate corrected
    earlier changes that line, it does not bring it in)."""
    had = {line.key for line in before}
    rule_ids = [
        int(line.key.rsplit(":", 1)[1])
        for line in note.lines
        if line.kind == ledger.TAX and line.key.count(":") == 3 and line.key not in had
    ]
    correction = (
        TaxRule.objects.filter(pk__in=rule_ids, replaces__isnull=False).order_by("-created_at", "-pk").first()
        if rule_ids
        else None
    )
    if correction is not None:
        return Statement.RectificationType.R1, correction.correction_reason
    return Statement.RectificationType.R4, LATE_LEDGER_REASON


def _draft(line: StatementLine) -> ledger.Draft:
    """A stored line as a draft, for the subtraction (a stored tax base is in cents, which subtracts exactly)."""
    return ledger.Draft(
        key=line.key,
        kind=line.kind,
        exact_eur=line.exact_eur,
        amount_eur=line.amount_eur,
        name=line.name,
        quantity=line.quantity,
        unit_price=line.unit_price,
        tax_rate=line.tax_rate,
        base_exact=line.base_eur,
    )


def correct_tax_rate(
    rule: TaxRule,
    rate,
    first_day: date,
    last_day: date,
    *,
    reason: str,
    name: str = "",
    acting_user=None,
    now: datetime | None = None,
) -> tuple[TaxRule, list[Statement]]:
    """A tax rate corrected after issue, from end to end (docs/billing.md, "A tax rate corrected after issue"):
    the correcting rule (meters.tax_corrections.correct_rate), the ledger's pairs of correction lines
    (``retax``), then an R1 rectificativa by differences for every issued statement whose month they changed.
    Returns the correcting rule and the notes issued. Refused before anything is written:
    meters.tax_corrections.CorrectionRefused."""
    correction = tax_corrections.correct_rate(
        rule, rate, first_day, last_day, reason=reason, name=name, actor=acting_user, now=now
    )
    return correction, retax_and_rectify(correction, acting_user=acting_user, now=now)


def retax_and_rectify(correction: TaxRule, *, acting_user=None, now: datetime | None = None) -> list[Statement]:
    """Move what is still taxed at the corrected rule's old rate (``retax``) and issue the R1 notes the issued months
    need. Run again (``manage.py correct_tax_rate --again``) after a crash between the two, or for lines a
    concurrent writer priced at the old rate: each step does only what is left."""
    retaxed = tax_corrections.retax(correction)
    notes = []
    if retaxed.start is None:
        return notes
    households = set(
        HourlyUsage.objects.filter(
            kind=HourlyUsage.Kind.RETAX, hour_start__gte=retaxed.start, hour_start__lt=retaxed.end
        )
        .values_list("household_id", flat=True)
        .distinct()
        .order_by()
    )
    originals = (
        Statement.objects.filter(
            household_id__in=households,
            revision=0,
            period_start__lt=retaxed.end,
            period_end__gt=retaxed.start,
        )
        .order_by("household_id", "month")
        .values_list("household_id", "month")
    )
    for household_id, month in originals:
        note = correct(
            household_id,
            month,
            now=now,
            acting_user=acting_user,
            rectification_type=Statement.RectificationType.R1,
            reason=correction.correction_reason,
        )
        if note is not None:
            notes.append(note)
    return notes
