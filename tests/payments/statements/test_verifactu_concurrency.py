"""Two workers recording for one issuer at once never fork its chain (PostgreSQL: real row locks, real threads).

Statements (series EP), a corrective note (series EPR) and anulaciones lock different series counters or
none, and meet only at the issuer's chain head: each must link to the record the one before it wrote.
"""

from __future__ import annotations

import pytest
from django.db import connection

from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.models import InvoiceRecord, InvoiceRecordChain, Statement
from payments.statements.verifactu import records
from tests.payments.statements import verifactukit
from tests.payments.statements.kit import OCTOBER
from tests.payments.statements.verifactukit import CORRECTED_AT, ISSUED_AT
from tests.threads import at_once

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions: PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]


def test_statements_notes_and_anulaciones_at_once_make_one_unbroken_chain(make_household, make_meter):
    homes = verifactukit.town(make_household, make_meter, 8)
    statements = verifactukit.issue(homes[:6])
    late = homes[5]
    verifactukit.add_hour(late, late.meters.get(), statements[0].period_start.replace(hour=23))

    def cancel(statement):
        return lambda: records.cancel(statement, reason="test")

    calls = [cancel(statement) for statement in statements[:4]]
    calls.append(lambda: corrections.correct(late.pk, OCTOBER, now=CORRECTED_AT))
    calls += [lambda home=home: issue_households([home.pk], OCTOBER, now=ISSUED_AT) for home in homes[6:]]
    _, errors = at_once(*calls)

    assert errors == []
    chain = InvoiceRecordChain.objects.get()
    assert records.verify(chain) == []
    written = list(InvoiceRecord.objects.order_by("position"))
    assert [record.position for record in written] == list(range(1, 6 + 4 + 1 + 2 + 1))
    assert sorted(record.kind for record in written[6:]) == ["alta"] * 3 + ["anulacion"] * 4
    assert chain.length == len(written) and chain.last_hash == written[-1].hash
    # Every statement, corrective note included, has its alta, and the generation times follow the chain.
    assert Statement.objects.filter(invoice_records__kind="alta").count() == Statement.objects.count() == 9
    moments = [record.generated_at for record in written]
    assert moments == sorted(moments)
