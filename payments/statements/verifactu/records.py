"""VERI*FACTU invoice records: an alta for every issued statement and corrective note, an anulación for a
statement that should not exist, chained per issuer NIF with the AEAT's hash (docs/spain.md, "VERI*FACTU").

``record_issued`` runs inside the transaction that inserts the statements (payments.statements.issuing
``issued``), so a statement and its record commit together or not at all. Per issuer:

1. lock the issuer's chain head (``InvoiceRecordChain``, created on its first record);
2. for each statement, in number order: compose the record from the statement as stored (its issuer
   and customer snapshots, its tax lines), link it to the head (the previous record's identity and
   hash), take the generation time and hash it (payments.statements.verifactu.fingerprint); the
   record becomes the head;
3. insert the records in one statement and move the head.

A record is never changed: ``Final`` in Python, a trigger on PostgreSQL (migration 0004). An error
in a record would be corrected by a new alta marked as a correction (subsanación, not built); an
invoice that should not exist gets an anulación (``cancel``), itself a link of the chain.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from lib.periods import local_date
from payments.statements.models import InvoiceRecord, InvoiceRecordChain, Statement, StatementLine
from payments.statements.verifactu import fingerprint
from payments.statements.verifactu.fingerprint import amount_text, date_text

log = logging.getLogger(__name__)

# The indirect taxes a record's breakdown lists (TaxRule.tax -> the AEAT's list L1 "Impuesto"). Other taxes
# (the electricity tax) are part of VAT's base, as on the statement, and are not listed on their own.
INDIRECT_TAXES = {"iva": "01", "ipsi": "02", "igic": "03"}
GENERAL_REGIME = "01"  # ClaveRegimen: régimen general
SUBJECT = "S1"  # CalificacionOperacion: subject and not exempt, no reverse charge
CORRECTIVE_TYPE = "R4"  # TipoFactura of a corrective note without a type (none since statements.0006)
SIMPLIFIED_CORRECTIVE_TYPE = "R5"
SYSTEM_NAME = "EnergyPay"  # NombreSistemaInformatico (30 characters at most)
SYSTEM_ID = "EP"  # IdSistemaInformatico (2 characters)
SYSTEM_VERSION = "1.0"
NIF = re.compile(r"^[0-9A-Z]{9}$")
_INSTANT = timedelta(microseconds=1)


class RecordRefused(ValueError):
    """A record cannot be generated for this statement (an anulación twice, a statement without an alta)."""


def nif(value: str | None) -> str:
    """A Spanish tax id as a record writes it (9 characters, upper case), or "" when it is not one."""
    text = re.sub(r"[\s.-]", "", (value or "")).upper()
    if len(text) == 11 and text.startswith("ES"):
        text = text[2:]
    return text if NIF.match(text) else ""


def issuer_tax_id(statement: Statement) -> str:
    tax_id = nif(statement.issuer.get("tax_id"))
    if not tax_id:
        raise ImproperlyConfigured(
            f"Statement {statement.code}: the issuer's tax id {statement.issuer.get('tax_id')!r} is not a Spanish "
            "NIF of 9 characters; VERI*FACTU records need one (STATEMENT_ISSUER_TAX_ID)."
        )
    return tax_id


def record_issued(statements: list[Statement], *, acting_user=None) -> list[InvoiceRecord]:
    """An alta for each of ``statements`` (just inserted, in this transaction), chained per issuer; the steps are
    the module's."""
    if not statements:
        return []
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("records are written in the transaction that inserts their statements")
    by_issuer: defaultdict[str, list[Statement]] = defaultdict(list)
    for statement in statements:
        by_issuer[issuer_tax_id(statement)].append(statement)
    breakdowns = tax_breakdowns([statement.pk for statement in statements])
    originals = _originals(statements)
    records = []
    for tax_id in sorted(by_issuer):
        chain = lock_chain(tax_id)
        drafts = [
            alta_draft(statement, tax_id, breakdowns.get(statement.pk, []), originals.get(statement.corrects_id))
            for statement in sorted(by_issuer[tax_id], key=lambda s: (s.series_id, s.year, s.number))
        ]
        records += append(chain, drafts, acting_user=acting_user)
    return records


def cancel(statement: Statement, *, acting_user=None, reason: str = "") -> InvoiceRecord:
    """Record that ``statement`` should not exist: an anulación of its alta, appended to the issuer's chain.

    The statement itself stays as issued (documents are never edited); its page and the export show the
    anulación. Refused (``RecordRefused``, nothing written) for a statement without an alta or already cancelled.
    """
    with transaction.atomic(durable=True):
        alta = InvoiceRecord.objects.filter(statement=statement, kind=InvoiceRecord.Kind.ALTA).first()
        if alta is None:
            raise RecordRefused(f"{statement.code} has no registro de alta to cancel.")
        chain = lock_chain(alta.issuer_tax_id)
        # Re-read under the chain lock: a concurrent cancel of the same statement committed first.
        if InvoiceRecord.objects.filter(statement=statement, kind=InvoiceRecord.Kind.ANULACION).exists():
            raise RecordRefused(f"{statement.code} is already cancelled.")
        draft = Draft(
            statement=statement,
            kind=InvoiceRecord.Kind.ANULACION,
            issuer_tax_id=alta.issuer_tax_id,
            invoice_number=alta.invoice_number,
            invoice_date=alta.invoice_date,
            content={"reason": reason[:500]},
        )
        (record,) = append(chain, [draft], acting_user=acting_user)
    log.info("invoice_record_cancelled statement=%s record=%s", statement.code, record.position)
    return record


def lock_chain(tax_id: str) -> InvoiceRecordChain:
    """The issuer's chain head, locked until the transaction ends (created, empty, on the issuer's first record)."""
    # Two first appends at once: ON CONFLICT DO NOTHING waits for the other's insert, then both lock the one row.
    InvoiceRecordChain.objects.bulk_create([InvoiceRecordChain(issuer_tax_id=tax_id)], ignore_conflicts=True)
    return InvoiceRecordChain.objects.select_for_update().get(issuer_tax_id=tax_id)


@dataclass
class Draft:
    """A record before it is linked and hashed."""

    statement: Statement
    kind: str
    issuer_tax_id: str
    invoice_number: str
    invoice_date: date
    invoice_type: str = ""
    total_tax: Decimal | None = None
    total: Decimal | None = None
    content: dict | None = None


def append(chain: InvoiceRecordChain, drafts: list[Draft], *, acting_user=None) -> list[InvoiceRecord]:
    """Link ``drafts`` to the locked ``chain`` in order, hash them, insert them and move the head."""
    zone = ZoneInfo(settings.STATEMENT_TIME_ZONE)
    records = []
    for draft in drafts:
        # Taken under the chain lock, so generation times follow the chain's order.
        generated_at = timezone.now().astimezone(zone).replace(microsecond=0)
        record = InvoiceRecord(
            chain=chain,
            position=chain.length + 1,
            kind=draft.kind,
            statement=draft.statement,
            issuer_tax_id=draft.issuer_tax_id,
            invoice_number=draft.invoice_number,
            invoice_date=draft.invoice_date,
            invoice_type=draft.invoice_type,
            total_tax=draft.total_tax,
            total=draft.total,
            previous_issuer_tax_id=chain.last_issuer_tax_id,
            previous_invoice_number=chain.last_invoice_number,
            previous_invoice_date=chain.last_invoice_date,
            previous_hash=chain.last_hash,
            generated_at=generated_at,
            generated_text=fingerprint.moment_text(generated_at),
            content={**(draft.content or {}), "system": system_snapshot()},
            created_by=acting_user,
        )
        record.hash = hash_of(record)
        records.append(record)
        chain.length = record.position
        chain.last_issuer_tax_id = record.issuer_tax_id
        chain.last_invoice_number = record.invoice_number
        chain.last_invoice_date = record.invoice_date
        chain.last_hash = record.hash
    InvoiceRecord.objects.bulk_create(records)
    chain.save()
    return records


def hash_of(record: InvoiceRecord) -> str:
    """The huella of a record from its stored fields (the same function checks a stored chain, ``verify``)."""
    if record.kind == InvoiceRecord.Kind.ALTA:
        return fingerprint.alta(
            issuer=record.issuer_tax_id,
            number=record.invoice_number,
            issue_date=date_text(record.invoice_date),
            invoice_type=record.invoice_type,
            total_tax=amount_text(record.total_tax),
            total=amount_text(record.total),
            previous_hash=record.previous_hash,
            generated=record.generated_text,
        )
    return fingerprint.anulacion(
        issuer=record.issuer_tax_id,
        number=record.invoice_number,
        issue_date=date_text(record.invoice_date),
        previous_hash=record.previous_hash,
        generated=record.generated_text,
    )


def verify(chain: InvoiceRecordChain) -> list[str]:
    """What is wrong with a stored chain, record by record (nothing: it is whole). Reads it in batches."""
    problems = []
    previous: InvoiceRecord | None = None
    expected = 1
    for record in InvoiceRecord.objects.filter(chain=chain).order_by("position").iterator(chunk_size=2000):
        label = f"#{record.position} {record.invoice_number}"
        if record.position != expected:
            problems.append(f"{label}: position {record.position}, expected {expected}")
        if hash_of(record) != record.hash:
            problems.append(f"{label}: its hash does not match its fields")
        link = ("", "", None, "")
        if previous is not None:
            link = (previous.issuer_tax_id, previous.invoice_number, previous.invoice_date, previous.hash)
        if (
            record.previous_issuer_tax_id,
            record.previous_invoice_number,
            record.previous_invoice_date,
            record.previous_hash,
        ) != link:
            problems.append(f"{label}: does not link to the record before it")
        previous, expected = record, record.position + 1
    if chain.length != expected - 1 or (previous and previous.hash != chain.last_hash):
        problems.append(f"the chain's head ({chain.length}) is not its newest record ({expected - 1})")
    return problems


def alta_draft(statement: Statement, tax_id: str, breakdown: list[dict], original: InvoiceRecord | None) -> Draft:
    """The registro de alta of a statement or corrective note, from the statement as stored."""
    recipient = _recipient(statement)
    if statement.kind == Statement.Kind.STATEMENT:
        invoice_type = "F1" if recipient else "F2"
    elif original is not None and original.invoice_type == "F2":
        invoice_type = SIMPLIFIED_CORRECTIVE_TYPE
    else:
        invoice_type = statement.rectification_type or CORRECTIVE_TYPE
    if invoice_type in ("F2", SIMPLIFIED_CORRECTIVE_TYPE):
        recipient = None  # simplified invoices and their corrections name no recipient (AEAT errors 1189/1190)
    breakdown = breakdown or [_untaxed(statement.total_eur)]
    content = {
        "issuer_name": statement.issuer.get("name", "")[:120],
        "description": _description(statement),
        "recipient": recipient,
        "breakdown": breakdown,
    }
    if statement.kind == Statement.Kind.CORRECTIVE:
        corrected = statement.corrects
        # TipoRectificativa: I (by differences: a note carries only what changed) or S (by substitution).
        content["corrective_type"] = statement.rectification_method or Statement.RectificationMethod.DIFFERENCES
        content["corrects"] = {
            "issuer_tax_id": original.issuer_tax_id if original else tax_id,
            "number": corrected.code,
            "date": date_text(corrected.issue_date),
        }
    return Draft(
        statement=statement,
        kind=InvoiceRecord.Kind.ALTA,
        issuer_tax_id=tax_id,
        invoice_number=statement.code,
        invoice_date=statement.issue_date,
        invoice_type=invoice_type,
        total_tax=sum((Decimal(item["tax"]) for item in breakdown), Decimal("0")),
        total=statement.total_eur,
        content=content,
    )


def tax_breakdowns(statement_ids: list[int]) -> dict[int, list[dict]]:
    """Each statement's indirect taxes (VAT, IGIC, IPSI) by tax and rate: base and amount as the statement shows
    them (one query). Lines are keyed ``tax:<compound>:<tax>:<rule>`` (payments.statements.lines)."""
    sums: defaultdict[int, dict[tuple[str, Decimal], list[Decimal]]] = defaultdict(dict)
    for statement_id, key, rate, base, amount in (
        StatementLine.objects.filter(statement_id__in=statement_ids, kind=StatementLine.Kind.TAX)
        .order_by("statement_id", "position")
        .values_list("statement_id", "key", "tax_rate", "base_eur", "amount_eur")
    ):
        parts = key.split(":")
        code = INDIRECT_TAXES.get(parts[2]) if len(parts) == 4 else None
        if code is None or rate is None:
            continue
        pair = sums[statement_id].setdefault((code, rate), [Decimal("0"), Decimal("0")])
        pair[0] += base or Decimal("0")
        pair[1] += amount
    return {
        statement_id: [
            {
                "tax": amount_text(amount),
                "tax_code": code,
                "regime": GENERAL_REGIME,
                "qualification": SUBJECT,
                "rate": f"{(rate * 100).quantize(Decimal('0.01')):f}",
                "base": amount_text(base),
            }
            for (code, rate), (base, amount) in taxes.items()
        ]
        for statement_id, taxes in sums.items()
    }


def system_snapshot() -> dict:
    """The invoicing system as the record names it (SistemaInformatico), at generation."""
    return {
        "producer_name": settings.VERIFACTU_PRODUCER_NAME[:120],
        "producer_tax_id": nif(settings.VERIFACTU_PRODUCER_TAX_ID),
        "name": SYSTEM_NAME,
        "id": SYSTEM_ID,
        "version": SYSTEM_VERSION,
        "installation": settings.VERIFACTU_INSTALLATION_NUMBER[:100],
        "only_verifactu": "S",
        "multiple_issuers_possible": "N",
        "multiple_issuers": "N",
    }


def _recipient(statement: Statement) -> dict | None:
    tax_id = nif(statement.customer.get("tax_id"))
    if not tax_id:
        return None
    return {"name": (statement.customer.get("name") or "")[:120], "tax_id": tax_id}


def _untaxed(total: Decimal) -> dict:
    """The breakdown of a document without an indirect tax line (no VAT rule, or a note whose VAT did not change)."""
    return {
        "tax": "0.00",
        "tax_code": INDIRECT_TAXES["iva"],
        "regime": GENERAL_REGIME,
        "qualification": SUBJECT,
        "rate": "0.00",
        "base": amount_text(total),
    }


def _description(statement: Statement) -> str:
    first = local_date(statement.period_start, statement.timezone)
    last = local_date(statement.period_end - _INSTANT, statement.timezone)
    text = f"Suministro de electricidad del {date_text(first)} al {date_text(last)}"
    if statement.kind == Statement.Kind.CORRECTIVE:
        how = (
            "sustitución"
            if statement.rectification_method == Statement.RectificationMethod.SUBSTITUTION
            else "diferencias"
        )
        cause = f" ({statement.rectification_type})" if statement.rectification_type else ""
        text = f"Rectificación por {how}{cause} de {statement.corrects.code}. {text}"
    return text[:500]


def _originals(statements: list[Statement]) -> dict[int, InvoiceRecord]:
    ids = [statement.corrects_id for statement in statements if statement.corrects_id]
    if not ids:
        return {}
    return {
        record.statement_id: record
        for record in InvoiceRecord.objects.filter(statement_id__in=ids, kind=InvoiceRecord.Kind.ALTA)
    }
