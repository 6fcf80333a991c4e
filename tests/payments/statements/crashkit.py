"""The child of the statements' kill -9 test: ``python -m tests.payments.statements.crashkit issue <month> <chunk>``.

It issues the month's statements for every household, as beat's task would (``issuing.issue_households``),
``chunk`` households per transaction, printing ``ready`` once Django is loaded, ``<point> <seconds>`` at each
point of POINTS a chunk passes and ``done <seconds> <tally>`` at the end; with ``CRASH_AT=<point>:<n>`` in its
environment it sends itself SIGKILL the n-th time it reaches the point (tests/payments/crashkit.py's marker).
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, date, datetime

# Points of a chunk, in order.
POINTS = (
    "compose",  # issue_chunk starts: nothing read yet
    "inserted",  # statements, lines, payments and deliveries written; the transaction not committed
    "committed",  # the chunk committed
)
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def _issue(month: str, chunk: str) -> None:
    import django

    django.setup()
    from meters.models import Household
    from payments.statements import issuing
    from tests.payments.crashkit import _marker

    issuing.CHUNK = int(chunk)
    began = time.monotonic()
    print("ready", flush=True)
    around = _marker(began)
    issuing.issue_chunk = around(issuing.issue_chunk, before="compose", after="committed")
    issuing.issued = around(issuing.issued, after="inserted")
    ids = list(Household.objects.order_by("pk").values_list("pk", flat=True))
    tally = issuing.issue_households(ids, date.fromisoformat(month), now=NOW)
    print(f"done {time.monotonic() - began:.4f} {json.dumps(tally)}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energypay.settings")
    command, *arguments = sys.argv[1:]
    {"issue": _issue}[command](*arguments)
