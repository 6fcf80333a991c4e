"""Sending the VERI*FACTU records to the AEAT: against a local fake of the service over real HTTP (and HTTPS with
client certificates), through zeep. Issuing never waits for it; nothing is lost or registered twice."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core import checks
from django.core.management import CommandError, call_command
from django.urls import reverse

from payments.statements.models import InvoiceRecord, RecordQueue, RecordSubmission, RecordTransmission
from payments.statements.verifactu import records, sending
from payments.statements.verifactu.sending import AeatSender
from tests.payments.statements import verifactukit
from tests.payments.statements.fakeaeat import FakeAeat, make_tls
from tests.payments.statements.verifactukit import ISSUED_AT

SENT_AT = ISSUED_AT + timedelta(minutes=5)
State = RecordTransmission.State


@pytest.fixture
def aeat():
    fake = FakeAeat()
    yield fake
    fake.stop()


def sender_for(fake: FakeAeat, **tls) -> AeatSender:
    return AeatSender(
        endpoint=fake.url, cert_file=tls.get("cert", ""), key_file=tls.get("key", ""), ca_file=tls.get("ca", "")
    )


def states() -> dict[str, str]:
    return {
        t.record.invoice_number: t.state for t in RecordTransmission.objects.select_related("record").order_by("record")
    }


def test_an_accepted_batch_keeps_the_answer_and_marks_every_record_accepted(make_household, make_meter, aeat):
    statements = verifactukit.issue(verifactukit.town(make_household, make_meter, 3))

    tally = sending.send_due(SENT_AT, sender=sender_for(aeat))

    assert tally == {State.ACCEPTED: 3}
    assert [key[1] for key in aeat.state.received()] == [s.code for s in statements]  # in generation order, once
    submission = RecordSubmission.objects.get()
    assert submission.state == RecordSubmission.State.ANSWERED
    assert (submission.status, submission.csv, submission.wait_seconds) == ("Correcto", "A-FAKECSV000001", 60)
    assert (submission.first_position, submission.last_position, submission.record_count) == (1, 3, 3)
    assert (
        "A-FAKECSV000001" in submission.response_xml
        and "RespuestaRegFactuSistemaFacturacion" in submission.response_xml
    )
    assert statements[0].code in submission.request_xml
    assert set(states().values()) == {State.ACCEPTED}
    assert RecordQueue.objects.get().sent_through == 3  # the next run looks for pending records after the third
    # Nothing more to send: a later run sends nothing.
    assert sending.send_due(SENT_AT + timedelta(hours=1), sender=sender_for(aeat)) == {}
    assert len(aeat.state.requests) == 1


def test_accepted_with_errors_and_rejected_records_are_kept_with_their_error_and_never_resent(
    make_household, make_meter, aeat
):
    homes = verifactukit.town(make_household, make_meter, 4)
    statements = verifactukit.issue(homes[:3])
    aeat.state.decide = {
        statements[1].code: ("AceptadoConErrores", "2000", "El cálculo de la huella suministrada es incorrecta."),
        statements[2].code: ("Incorrecto", "1100", "Valor o tipo incorrecto del campo: NIF"),
    }

    sending.send_due(SENT_AT, sender=sender_for(aeat))

    assert RecordSubmission.objects.get().status == "ParcialmenteCorrecto"
    assert states() == {
        statements[0].code: State.ACCEPTED,
        statements[1].code: State.ACCEPTED_WITH_ERRORS,
        statements[2].code: State.REJECTED,
    }
    rejected = RecordTransmission.objects.get(state=State.REJECTED)
    assert (rejected.error_code, rejected.error_text) == ("1100", "Valor o tipo incorrecto del campo: NIF")
    assert RecordTransmission.objects.get(state=State.ACCEPTED_WITH_ERRORS).error_code == "2000"
    # The next statement goes after the wait; the rejected record does not go again.
    later = verifactukit.issue(homes[3:], at=ISSUED_AT + timedelta(minutes=1))
    sending.send_due(SENT_AT + timedelta(minutes=2), sender=sender_for(aeat))
    assert [key[1] for key in aeat.state.requests[-1]] == [later[0].code]


def test_a_duplicate_answer_counts_as_accepted(make_household, make_meter, aeat):
    statements = verifactukit.issue(verifactukit.town(make_household, make_meter, 2))
    first = InvoiceRecord.objects.get(position=1)
    aeat.state.held[("B12345674", first.invoice_number, "02-11-2026", "Alta")] = "00000000000000000042"

    assert sending.send_due(SENT_AT, sender=sender_for(aeat)) == {State.ACCEPTED: 2}

    duplicate = RecordTransmission.objects.get(record=first)
    assert (duplicate.state, duplicate.duplicate, duplicate.error_code) == (State.ACCEPTED, True, "3000")
    assert RecordTransmission.objects.get(record__invoice_number=statements[1].code).duplicate is False


class WorkerDies(BaseException):
    """A worker killed after the AEAT took the batch, before the answer was written down."""


def test_a_batch_whose_answer_was_lost_is_sent_again_and_the_aeat_keeps_each_record_once(
    make_household, make_meter, aeat
):
    verifactukit.issue(verifactukit.town(make_household, make_meter, 2))
    real = sender_for(aeat)

    class DiesAfterSending:
        def send(self, document):
            real.send(document)
            raise WorkerDies

    with pytest.raises(WorkerDies):
        sending.send_due(SENT_AT, sender=DiesAfterSending())
    # In flight: another run does not send it again while its worker might still answer.
    assert sending.send_due(SENT_AT + timedelta(minutes=1), sender=real) == {}

    tally = sending.send_due(SENT_AT + sending.STALE + timedelta(seconds=1), sender=real)

    assert tally == {State.ACCEPTED: 2}
    assert RecordTransmission.objects.filter(duplicate=True, state=State.ACCEPTED).count() == 2
    assert len(aeat.state.held) == 2  # registered once each
    assert list(RecordSubmission.objects.order_by("pk").values_list("state", flat=True)) == ["failed", "answered"]


def test_a_batch_under_1000_waits_the_time_the_aeat_asked_for_and_a_full_one_does_not(
    make_household, make_meter, aeat, monkeypatch
):
    monkeypatch.setattr(sending, "BATCH", 2)  # a full batch, scaled down from 1,000
    homes = verifactukit.town(make_household, make_meter, 4)
    verifactukit.issue(homes[:1])
    aeat.state.wait = 240
    sending.send_due(SENT_AT, sender=sender_for(aeat))
    assert RecordQueue.objects.get().not_before == SENT_AT + timedelta(seconds=240)

    verifactukit.issue(homes[1:2], at=SENT_AT + timedelta(seconds=10))
    assert sending.send_due(SENT_AT + timedelta(seconds=239), sender=sender_for(aeat)) == {}
    assert len(aeat.state.requests) == 1

    verifactukit.issue(homes[2:3], at=SENT_AT + timedelta(seconds=20))  # two pending: a full batch goes now
    assert sending.send_due(SENT_AT + timedelta(seconds=239), sender=sender_for(aeat)) == {State.ACCEPTED: 2}
    assert [len(request) for request in aeat.state.requests] == [1, 2]

    verifactukit.issue(homes[3:], at=SENT_AT + timedelta(seconds=30))
    assert sending.send_due(SENT_AT + timedelta(seconds=239 + 239), sender=sender_for(aeat)) == {}
    assert sending.send_due(SENT_AT + timedelta(seconds=239 + 240), sender=sender_for(aeat)) == {State.ACCEPTED: 1}


def test_more_than_1000_pending_go_in_batches_of_1000_at_most(make_household, make_meter, aeat, monkeypatch):
    monkeypatch.setattr(sending, "BATCH", 2)
    verifactukit.issue(verifactukit.town(make_household, make_meter, 5))

    sending.send_due(SENT_AT, sender=sender_for(aeat))

    # Two full batches at once; the last, partial one after the wait.
    assert [len(request) for request in aeat.state.requests] == [2, 2]
    sending.send_due(SENT_AT + timedelta(seconds=60), sender=sender_for(aeat))
    assert [len(request) for request in aeat.state.requests] == [2, 2, 1]
    assert [key[1] for key in aeat.state.received()] == list(
        InvoiceRecord.objects.order_by("position").values_list("invoice_number", flat=True)
    )


def test_the_aeat_down_delays_sending_never_issuing_and_nothing_is_lost_or_sent_twice(make_household, make_meter, aeat):
    homes = verifactukit.town(make_household, make_meter, 2)
    aeat.state.down = "503"
    statements = verifactukit.issue(homes)  # issuing does not call the AEAT
    assert len(statements) == 2 and InvoiceRecord.objects.count() == 2

    assert sending.send_due(SENT_AT, sender=sender_for(aeat)) == {"failed": 2}
    failed = RecordSubmission.objects.get()
    assert (failed.state, failed.error) == (RecordSubmission.State.FAILED, "HTTP 503")
    assert "Servicio no disponible" in failed.response_xml
    assert set(states().values()) == {State.PENDING}
    queue = RecordQueue.objects.get()
    assert (queue.failures, queue.not_before) == (1, SENT_AT + timedelta(minutes=1))

    aeat.state.down = "fault"
    assert sending.send_due(SENT_AT + timedelta(seconds=59), sender=sender_for(aeat)) == {}  # backing off
    assert sending.send_due(SENT_AT + timedelta(minutes=1), sender=sender_for(aeat)) == {"failed": 2}
    fault = RecordSubmission.objects.order_by("pk").last()
    assert fault.error.startswith("SOAP fault") and "4102" in fault.response_xml
    queue.refresh_from_db()
    assert (queue.failures, queue.not_before) == (2, SENT_AT + timedelta(minutes=3))  # twice as long

    aeat.state.down = ""
    assert sending.send_due(SENT_AT + timedelta(minutes=3), sender=sender_for(aeat)) == {State.ACCEPTED: 2}
    assert [key[1] for key in aeat.state.received()] == [s.code for s in statements]  # once each
    assert RecordTransmission.objects.get(record__position=1).attempts == 3
    queue.refresh_from_db()
    assert (queue.failures, queue.sent_through) == (0, 2)


def test_connection_refused_leaves_the_records_pending(make_household, make_meter):
    aeat = FakeAeat()
    url = aeat.url
    aeat.stop()
    verifactukit.issue(verifactukit.town(make_household, make_meter, 1))

    sender = AeatSender(endpoint=url, cert_file="", key_file="")
    assert sending.send_due(SENT_AT, sender=sender) == {"failed": 1}

    assert RecordSubmission.objects.get().error.startswith("network: ConnectionError")
    assert states() == {InvoiceRecord.objects.get().invoice_number: State.PENDING}


def test_sending_over_mutual_tls_with_the_certificate_from_settings(make_household, make_meter, tmp_path, settings):
    tls = make_tls(tmp_path)
    aeat = FakeAeat(tls)
    try:
        verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
        settings.VERIFACTU_SEND_ENABLED = True
        settings.VERIFACTU_ENDPOINT = aeat.url
        settings.VERIFACTU_CERT_FILE = tls.client_cert
        settings.VERIFACTU_KEY_FILE = tls.client_key
        settings.VERIFACTU_CA_FILE = tls.ca

        assert sending.send_due(SENT_AT) == {State.ACCEPTED: 1}
        assert len(aeat.state.held) == 1
    finally:
        aeat.stop()


def test_without_the_client_certificate_the_service_refuses_and_the_records_stay_pending(
    make_household, make_meter, tmp_path
):
    tls = make_tls(tmp_path)
    aeat = FakeAeat(tls)
    try:
        verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
        sender = AeatSender(endpoint=aeat.url, cert_file="", key_file="", ca_file=tls.ca)

        assert sending.send_due(SENT_AT, sender=sender) == {"failed": 1}
        assert RecordSubmission.objects.get().error.startswith("network:")
        assert aeat.state.requests == []
        assert set(states().values()) == {State.PENDING}
    finally:
        aeat.stop()


def test_the_certificate_settings_reach_the_session_and_the_key_is_never_logged(
    make_household, make_meter, tmp_path, settings, caplog
):
    tls = make_tls(tmp_path)
    settings.VERIFACTU_ENDPOINT = "http://127.0.0.1:9/nothing-listens-here"
    settings.VERIFACTU_CERT_FILE = tls.client_cert
    settings.VERIFACTU_KEY_FILE = tls.client_key
    settings.VERIFACTU_CA_FILE = tls.ca
    sender = AeatSender.from_settings()
    assert (sender.session.cert, sender.session.verify) == ((tls.client_cert, tls.client_key), tls.ca)

    verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
    with caplog.at_level("DEBUG"):
        sending.send_due(SENT_AT, sender=sender)
    key = (tmp_path / "client.key").read_text().splitlines()[1]
    assert "verifactu_send_failed" in caplog.text and key not in caplog.text
    assert key not in RecordSubmission.objects.get().error


def test_nothing_is_sent_while_sending_is_off(make_household, make_meter, settings, aeat):
    verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
    settings.VERIFACTU_SEND_ENABLED = False
    settings.VERIFACTU_ENDPOINT = aeat.url

    assert sending.send_due(SENT_AT) == {}
    assert aeat.state.requests == [] and not RecordTransmission.objects.exists()


def test_sending_on_without_a_certificate_stops_the_start_with_a_clear_error(settings):
    settings.VERIFACTU_SEND_ENABLED = True
    settings.VERIFACTU_CERT_FILE = ""
    settings.VERIFACTU_KEY_FILE = "/nonexistent/key.pem"

    errors = {error.id: error.msg for error in checks.run_checks() if error.id.startswith("statements.")}

    assert "statements.E004" in errors and "VERIFACTU_CERT_FILE is not set" in errors["statements.E004"]
    assert "statements.E005" in errors and "VERIFACTU_KEY_FILE" in errors["statements.E005"]


def test_staff_find_rejected_records_with_their_error_and_every_answer_kept(
    make_household, make_meter, aeat, staff_client
):
    statements = verifactukit.issue(verifactukit.town(make_household, make_meter, 3))
    aeat.state.decide = {statements[1].code: ("Incorrecto", "1100", "Valor o tipo incorrecto del campo: NIF")}
    sending.send_due(SENT_AT, sender=sender_for(aeat))

    records = staff_client.get(reverse("admin:statements_invoicerecord_changelist"), {"aeat": "rejected"})
    assert records.status_code == 200
    page = records.content.decode()
    assert statements[1].code in page and "Rejected (1100)" in page
    assert statements[0].code not in page and statements[2].code not in page
    pending = staff_client.get(reverse("admin:statements_invoicerecord_changelist"), {"aeat": "pending"})
    assert statements[0].code not in pending.content.decode()

    answers = staff_client.get(reverse("admin:statements_recordtransmission_changelist"), {"state": "rejected"})
    assert "Valor o tipo incorrecto del campo: NIF" in answers.content.decode()
    submission = RecordSubmission.objects.get()
    detail = staff_client.get(reverse("admin:statements_recordsubmission_change", args=[submission.pk]))
    assert "A-FAKECSV000001" in detail.content.decode() and "ParcialmenteCorrecto" in detail.content.decode()


def test_the_command_sends_now_what_beat_would(make_household, make_meter, settings, aeat):
    verifactukit.issue(verifactukit.town(make_household, make_meter, 2))
    out = io.StringIO()
    with pytest.raises(CommandError, match="Sending is off"):
        call_command("send_invoice_records", stdout=out)
    settings.VERIFACTU_SEND_ENABLED = True
    settings.VERIFACTU_ENDPOINT = aeat.url

    call_command("send_invoice_records", stdout=out)
    call_command("send_invoice_records", stdout=out)

    assert out.getvalue().splitlines() == [
        "2 accepted.",
        "Nothing to send now (nothing pending, a batch in flight, or the AEAT's wait).",
    ]
    assert len(aeat.state.held) == 2


def test_an_alta_and_its_anulacion_in_one_batch_get_their_own_answers(make_household, make_meter, aeat):
    statements = verifactukit.issue(verifactukit.town(make_household, make_meter, 1))
    records.cancel(statements[0], reason="issued in error")  # same number and date: told apart by TipoOperacion

    assert sending.send_due(SENT_AT, sender=sender_for(aeat)) == {State.ACCEPTED: 2}

    assert [key[3] for key in aeat.state.received()] == ["Alta", "Anulacion"]
    assert set(RecordTransmission.objects.values_list("record__kind", "state")) == {
        ("alta", State.ACCEPTED),
        ("anulacion", State.ACCEPTED),
    }
