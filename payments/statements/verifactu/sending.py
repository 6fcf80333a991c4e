"""Sending the VERI*FACTU records to the AEAT, apart from issuing (docs/spain.md, "Sending the records").

Issuing writes a record in the statement's transaction and never waits for the network; a record with no
``RecordTransmission`` row has simply not been sent yet. Beat calls ``send_due`` (when
``VERIFACTU_SEND_ENABLED``), which for each issuer's chain:

1. claims the issuer's ``RecordQueue`` (``SELECT ... FOR UPDATE SKIP LOCKED``, then a conditional update of
   ``in_flight``), so two workers never send the same records; a batch left in flight by a worker that died
   is sent again after ``STALE`` (the AEAT answers "duplicate", error 3000, for what it already holds);
2. takes the pending records in generation order, at most ``BATCH`` (1,000): a full batch goes at once, a
   smaller one only once the wait the AEAT asked for (TiempoEsperaEnvio, ``not_before``) is over;
3. sends them through a ``Sender`` (``AeatSender``: SOAP over mutual TLS with zeep) outside any transaction;
4. keeps the answer as received on the ``RecordSubmission`` and each record's outcome on its
   ``RecordTransmission``: accepted, accepted with errors, rejected (kept for staff, never resent), or a
   duplicate (accepted: the AEAT already had it). A network error, a 5xx or a SOAP fault leaves the records
   pending and waits longer after each failure (lib.backoff).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol
from xml.etree import ElementTree as ET

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from lib.backoff import schedule
from payments.statements.models import (
    InvoiceRecord,
    InvoiceRecordChain,
    RecordQueue,
    RecordSubmission,
    RecordTransmission,
)
from payments.statements.verifactu import export
from payments.statements.verifactu.fingerprint import date_text

log = logging.getLogger(__name__)

WSDL = Path(__file__).resolve().parent / "wsdl" / "SistemaFacturacion.wsdl"
WSDL_NS = "https://www2.agenciatributaria.gob.es/static_files/common/internet/dep/aplicaciones/es/aeat/tike/cont/ws/SistemaFacturacion.wsdl"
BINDING = f"{{{WSDL_NS}}}sfVerifactu"
BATCH = export.BLOCK  # records per RegFactuSistemaFacturacion: 1,000
DEFAULT_WAIT = 60  # seconds, when an answer names no TiempoEsperaEnvio (the AEAT's initial value; to verify)
STALE = timedelta(minutes=10)  # a batch in flight this long lost its worker: it is sent again
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=1)
BATCHES_PER_RUN = 10  # per issuer and run: a long backlog drains over several runs
DUPLICATE = "3000"  # CodigoErrorRegistro "Registro de facturación duplicado"
OPERATION = {InvoiceRecord.Kind.ALTA: "Alta", InvoiceRecord.Kind.ANULACION: "Anulacion"}


@dataclass(frozen=True)
class Line:
    """One RespuestaLinea: the AEAT's verdict on one record."""

    number: str
    date: str
    operation: str
    state: str  # EstadoRegistro: Correcto, AceptadoConErrores, Incorrecto
    error_code: str = ""
    error_text: str = ""
    duplicate_state: str = ""  # RegistroDuplicado/EstadoRegistroDuplicado: Correcta, AceptadaConErrores, Anulada


@dataclass(frozen=True)
class Answer:
    """RespuestaRegFactuSistemaFacturacion, and the envelope it came in."""

    status: str  # EstadoEnvio: Correcto, ParcialmenteCorrecto, Incorrecto
    csv: str
    wait_seconds: int | None
    lines: list[Line] = field(default_factory=list)
    raw: str = ""


class SendFailed(Exception):
    """No answer to read: the network, an HTTP error, a SOAP fault. The records stay pending."""

    def __init__(self, message: str, raw: str = "") -> None:
        super().__init__(message)
        self.raw = raw


class Sender(Protocol):
    def send(self, document: bytes) -> Answer:
        """Send one RegFactuSistemaFacturacion (XML); the answer, or ``SendFailed``."""


class AeatSender:
    """The AEAT's SistemaFacturacion service over SOAP (zeep), with the client certificate for mutual TLS.

    The WSDL is ours (wsdl/SistemaFacturacion.wsdl: the AEAT's files are not fetched at run time). The
    certificate and key are given to requests as file paths and never read, logged or stored here.
    """

    def __init__(self, *, endpoint: str, cert_file: str, key_file: str, ca_file: str = "", timeout: int = 60):
        import requests
        import zeep
        from zeep import exceptions
        from zeep.plugins import HistoryPlugin
        from zeep.transports import Transport as BaseTransport

        class Transport(BaseTransport):
            def post(self, address, message, headers):
                # verify= given per request: requests would otherwise let REQUESTS_CA_BUNDLE override the session's CA.
                return self.session.post(
                    address, data=message, headers=headers, timeout=self.operation_timeout, verify=self.session.verify
                )

            def post_xml(self, address, envelope, headers):
                response = super().post_xml(address, envelope, headers)
                # An answer that is not XML (a proxy's or the AEAT's HTML 503 page) is an HTTP error, not a fault
                # for zeep to guess at.
                if response.status_code != 200 and "xml" not in response.headers.get("Content-Type", ""):
                    raise exceptions.TransportError(status_code=response.status_code, content=response.content)
                return response

        session = requests.Session()
        session.cert = (cert_file, key_file) if cert_file else None
        session.verify = ca_file or True
        self.session = session
        self.history = HistoryPlugin(maxlen=1)
        client = zeep.Client(
            str(WSDL),
            transport=Transport(session=session, timeout=timeout, operation_timeout=timeout),
            settings=zeep.Settings(strict=False, xml_huge_tree=False, forbid_dtd=True, forbid_entities=True),
            plugins=[self.history],
        )
        self.service = client.create_service(BINDING, endpoint)

    @classmethod
    def from_settings(cls) -> AeatSender:
        return cls(
            endpoint=settings.VERIFACTU_ENDPOINT,
            cert_file=settings.VERIFACTU_CERT_FILE,
            key_file=settings.VERIFACTU_KEY_FILE,
            ca_file=settings.VERIFACTU_CA_FILE,
            timeout=settings.VERIFACTU_TIMEOUT,
        )

    def send(self, document: bytes) -> Answer:
        import requests
        from lxml import etree
        from zeep import exceptions

        root = etree.fromstring(document)
        try:
            result = self.service.RegFactuSistemaFacturacion(_value_1=list(root))
        except requests.RequestException as error:
            raise SendFailed(f"network: {type(error).__name__}: {error}") from error
        except exceptions.Fault as fault:
            raise SendFailed(f"SOAP fault {fault.code}: {fault.message}", raw=self._received()) from fault
        except exceptions.TransportError as error:
            body = error.content.decode("utf-8", "replace") if isinstance(error.content, bytes) else str(error.content)
            raise SendFailed(f"HTTP {error.status_code}", raw=body[:20000]) from error
        except (exceptions.Error, etree.XMLSyntaxError) as error:
            raise SendFailed(f"unreadable answer: {error}", raw=self._received()) from error
        return Answer(
            status=result.EstadoEnvio or "",
            csv=result.CSV or "",
            wait_seconds=_seconds(result.TiempoEsperaEnvio),
            lines=[_line(item) for item in (result.RespuestaLinea or [])],
            raw=self._received(),
        )

    def _received(self) -> str:
        from lxml import etree

        try:
            envelope = self.history.last_received["envelope"]
        except (IndexError, KeyError, TypeError):
            return ""
        return etree.tostring(envelope, encoding="unicode")


def _line(item) -> Line:
    duplicate = getattr(item, "RegistroDuplicado", None)
    code = item.CodigoErrorRegistro
    return Line(
        number=item.IDFactura.NumSerieFactura,
        date=item.IDFactura.FechaExpedicionFactura,
        operation=item.Operacion.TipoOperacion if item.Operacion is not None else "",
        state=item.EstadoRegistro or "",
        error_code="" if code is None else str(code),
        error_text=(item.DescripcionErrorRegistro or "")[:1500],
        duplicate_state=(duplicate.EstadoRegistroDuplicado or "") if duplicate is not None else "",
    )


def _seconds(text: str | None) -> int | None:
    try:
        return int(str(text).strip())
    except (TypeError, ValueError):
        return None


def send_due(now: datetime | None = None, *, sender: Sender | None = None) -> Counter:
    """Send every issuer's pending records that may go now; the steps are the module's. Returns a tally."""
    tally: Counter = Counter()
    if sender is None:
        if not settings.VERIFACTU_SEND_ENABLED:
            return tally
        sender = AeatSender.from_settings()
    for chain_id in InvoiceRecordChain.objects.order_by("pk").values_list("pk", flat=True):
        tally.update(send_chain(chain_id, sender, now=now))
    return tally


def send_chain(chain_id: int, sender: Sender, *, now: datetime | None = None) -> Counter:
    """Send one issuer's pending records, batch after batch while the AEAT's wait allows."""
    tally: Counter = Counter()
    for _ in range(BATCHES_PER_RUN):
        moment = now or timezone.now()
        claimed = claim(chain_id, moment)
        if claimed is None:
            break
        submission, records = claimed
        document = ET.tostring(export.block(submission.chain, records), encoding="utf-8", xml_declaration=True)
        try:
            answer = sender.send(document)
        except SendFailed as failure:
            failed(submission, records, failure, now or timezone.now(), request=document)
            tally["failed"] += len(records)
            break
        tally.update(answered(submission, records, answer, now or timezone.now(), request=document))
    return tally


def pending(chain_id: int, after: int = 0):
    """The chain's records never sent or waiting to be sent again, in generation order (from position ``after``:
    the queue's ``sent_through``, so a long chain's answered past is not read again every run)."""
    return (
        InvoiceRecord.objects.filter(chain_id=chain_id, position__gt=after)
        .filter(Q(transmission__isnull=True) | Q(transmission__state=RecordTransmission.State.PENDING))
        .order_by("position")
    )


def claim(chain_id: int, now: datetime) -> tuple[RecordSubmission, list[InvoiceRecord]] | None:
    """The next batch of the chain, claimed for this worker (a ``RecordSubmission`` in flight), or None: another
    worker is sending, nothing is pending, or the AEAT's wait is not over for a batch under 1,000."""
    RecordQueue.objects.bulk_create([RecordQueue(chain_id=chain_id)], ignore_conflicts=True)
    with transaction.atomic():
        queue = RecordQueue.objects.select_for_update(skip_locked=True).filter(chain_id=chain_id).first()
        if queue is None:
            return None  # another worker holds it
        if queue.in_flight_id is not None:
            stuck = queue.in_flight
            if stuck.started_at > now - STALE:
                return None
            # Its worker died between sending and recording: nobody knows whether the AEAT got it, so it goes
            # again, and what the AEAT already holds comes back as a duplicate (accepted).
            RecordSubmission.objects.filter(pk=stuck.pk, state=RecordSubmission.State.SENDING).update(
                state=RecordSubmission.State.FAILED, finished_at=now, error="No answer recorded: sent again."
            )
            RecordQueue.objects.filter(pk=queue.pk, in_flight=stuck).update(in_flight=None)
            log.warning("verifactu_batch_lost issuer_chain=%s submission=%s", chain_id, stuck.pk)
        records = list(pending(chain_id, queue.sent_through).select_related("chain")[:BATCH])
        if not records:
            return None
        if len(records) < BATCH and queue.not_before is not None and queue.not_before > now:
            return None  # TiempoEsperaEnvio: only a full batch may go before it is over
        submission = RecordSubmission.objects.create(
            chain_id=chain_id,
            record_count=len(records),
            first_position=records[0].position,
            last_position=records[-1].position,
            started_at=now,
        )
        if RecordQueue.objects.filter(pk=queue.pk, in_flight__isnull=True).update(in_flight=submission) != 1:
            transaction.set_rollback(True)
            return None
        known = set(RecordTransmission.objects.filter(record__in=records).values_list("record_id", flat=True))
        RecordTransmission.objects.bulk_create(
            [RecordTransmission(record=record, submission=submission) for record in records if record.pk not in known]
        )
        RecordTransmission.objects.filter(record_id__in=known).update(submission=submission, updated_at=now)
        RecordTransmission.objects.filter(record__in=records).update(attempts=F("attempts") + 1)
    return submission, records


def answered(
    submission: RecordSubmission, records: list[InvoiceRecord], answer: Answer, now: datetime, *, request: bytes
) -> Counter:
    """Keep the AEAT's answer and each record's outcome; the next batch under 1,000 waits TiempoEsperaEnvio."""
    tally: Counter = Counter()
    lines = {(line.number, line.date, line.operation): line for line in answer.lines}
    wait = answer.wait_seconds if answer.wait_seconds is not None else DEFAULT_WAIT
    with transaction.atomic():
        queue = RecordQueue.objects.select_for_update().get(chain_id=submission.chain_id)
        RecordSubmission.objects.filter(pk=submission.pk).update(
            state=RecordSubmission.State.ANSWERED,
            finished_at=now,
            status=answer.status[:24],
            csv=answer.csv[:100],
            wait_seconds=wait,
            request_xml=request.decode("utf-8"),
            response_xml=answer.raw,
        )
        matched = 0
        # One UPDATE per outcome (most of a batch shares one), not one per record.
        by_outcome: defaultdict[tuple[str, bool, str, str], list[int]] = defaultdict(list)
        for record in records:
            line = lines.get((record.invoice_number, date_text(record.invoice_date), OPERATION[record.kind]))
            if line is None:
                tally["unanswered"] += 1
                continue  # stays pending: sent again with the next batch
            matched += 1
            state, duplicate = outcome(line)
            by_outcome[(state, duplicate, line.error_code[:10], line.error_text)].append(record.pk)
            tally[state] += 1
        for (state, duplicate, error_code, error_text), record_ids in by_outcome.items():
            RecordTransmission.objects.filter(record_id__in=record_ids).update(
                state=state,
                duplicate=duplicate,
                error_code=error_code,
                error_text=error_text,
                submission=submission,
                updated_at=now,
            )
        if queue.in_flight_id == submission.pk:
            first_pending = pending(submission.chain_id, queue.sent_through).values_list("position", flat=True).first()
            queue.sent_through = submission.last_position if first_pending is None else first_pending - 1
            queue.in_flight = None
            queue.not_before = now + timedelta(seconds=wait)
            # An answer naming no record (the whole submission refused) is a failure to retry later, like a fault.
            queue.failures = 0 if matched or not records else queue.failures + 1
            if not matched and records:
                queue.not_before = max(queue.not_before, now + _backoff(queue.failures))
            queue.save(update_fields=["in_flight", "not_before", "failures", "sent_through", "updated_at"])
    log.info(
        "verifactu_sent chain=%s records=%d status=%s csv=%s wait=%s outcome=%s",
        submission.chain_id,
        len(records),
        answer.status,
        answer.csv,
        wait,
        dict(tally),
    )
    return tally


def failed(
    submission: RecordSubmission, records: list[InvoiceRecord], failure: SendFailed, now: datetime, *, request: bytes
) -> None:
    """No answer: the records stay pending, and the next try waits longer after each failure in a row."""
    with transaction.atomic():
        queue = RecordQueue.objects.select_for_update().get(chain_id=submission.chain_id)
        RecordSubmission.objects.filter(pk=submission.pk).update(
            state=RecordSubmission.State.FAILED,
            finished_at=now,
            error=str(failure)[:2000],
            request_xml=request.decode("utf-8"),
            response_xml=failure.raw,
        )
        if queue.in_flight_id == submission.pk:
            queue.in_flight = None
            queue.failures += 1
            queue.not_before = now + _backoff(queue.failures)
            queue.save(update_fields=["in_flight", "not_before", "failures", "updated_at"])
    log.warning("verifactu_send_failed chain=%s records=%d error=%s", submission.chain_id, len(records), failure)


def outcome(line: Line) -> tuple[str, bool]:
    """A record's state from its RespuestaLinea, and whether it was a duplicate."""
    if line.state == "Correcto":
        return RecordTransmission.State.ACCEPTED, False
    if line.state == "AceptadoConErrores":
        return RecordTransmission.State.ACCEPTED_WITH_ERRORS, False
    if line.error_code == DUPLICATE:
        # Already held by the AEAT (a batch sent again after a lost answer): as it holds it.
        if line.duplicate_state == "AceptadaConErrores":
            return RecordTransmission.State.ACCEPTED_WITH_ERRORS, True
        return RecordTransmission.State.ACCEPTED, True
    return RecordTransmission.State.REJECTED, False


def _backoff(failures: int) -> timedelta:
    return schedule(max(failures - 1, 0), first=BACKOFF_FIRST, cap=BACKOFF_CAP)
