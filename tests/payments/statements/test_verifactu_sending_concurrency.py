"""Two workers sending one issuer's records at once never send a record twice (PostgreSQL: real row locks, threads)."""

from __future__ import annotations

import pytest
from django.db import connection

from payments.statements.models import RecordSubmission, RecordTransmission
from payments.statements.verifactu import sending
from payments.statements.verifactu.sending import AeatSender
from tests.payments.statements import verifactukit
from tests.payments.statements.fakeaeat import FakeAeat
from tests.payments.statements.test_verifactu_sending import SENT_AT
from tests.threads import at_once

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]


def test_two_workers_at_once_send_each_record_once(make_household, make_meter):
    aeat = FakeAeat()
    aeat.state.delay = 0.5  # the first worker's batch is still in flight when the second one looks
    try:
        statements = verifactukit.issue(verifactukit.town(make_household, make_meter, 3))

        def worker():
            return sending.send_due(SENT_AT, sender=AeatSender(endpoint=aeat.url, cert_file="", key_file=""))

        results, errors = at_once(worker, worker, worker)

        assert errors == []
        assert sorted(sum(result.values()) for result in results) == [0, 0, 3]
        assert [key[1] for key in aeat.state.received()] == [s.code for s in statements]
        assert RecordSubmission.objects.get().state == RecordSubmission.State.ANSWERED
        assert set(RecordTransmission.objects.values_list("state", "attempts")) == {("accepted", 1)}
    finally:
        aeat.stop()
