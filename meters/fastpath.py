"""One in-order reading in one statement, on PostgreSQL: the request most meters send, every 15 minutes.

``meters_ingest_reading()`` (installed by migration 0007) does, under the meter's row lock and in
the statement's own transaction, what meters/ingest.py and meters/usage.py do for a reading that
comes after the meter's latest, within the same UTC hour, into an open priced usage line: check the
token, the request budget, the billing window and the power; store the reading; add its energy to
the line (cost and tax rounded as ``_apply`` rounds them); raise the household's usage version;
update the meter. A repeat of the latest reading is a duplicate. Anything else (a first reading, out
of order, a dip, a new hour, an unpriced hour, an adjustment of a settled hour, a standing charge to
accrue, a bad token, over budget) comes back NULL with nothing written, and the Python path judges
the request in full, in the same request. tests/meters/test_fastpath.py holds both paths equal.

Python still parses and validates the body before the statement (meters/api.py), so no lock waits
for a client, and raises the hooks after it (the alarm hook runs after the commit, as before).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from datetime import datetime

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.http import HttpResponse

from lib import metrics
from meters import ratelimit
from meters.hooks import usage_changed
from meters.ingest import billing_window
from meters.models import Meter
from meters.schema import Checked

log = logging.getLogger(__name__)

_STATEMENT = "SELECT outcome, household FROM meters_ingest_reading(%s, %s, %s, %s, %s, %s, %s, %s)"
# The answers, as meters/ingest.py's Outcome.as_json() renders them through JsonResponse.
ACCEPTED = b'{"accepted": 1, "duplicates": 0, "rejected": []}'
DUPLICATE = b'{"accepted": 0, "duplicates": 1, "rejected": []}'


def ingest(token: str, valid: list[tuple[int, Checked]], rejected: list[dict], now: datetime) -> HttpResponse | None:
    """The answer to a request of one well-formed reading, ingested in one statement; or None: Python
    must judge the request (another database, more readings, a malformed one, or a case of its own).

    Outside a transaction the statement is its own (autocommit): its COMMIT is the 2xx's durability.
    Inside one (a caller's, or a test's), it runs in a savepoint, so a failure leaves the caller's
    transaction usable for the Python path.
    """
    db = connections[DEFAULT_DB_ALIAS]  # once: each use of django.db.connection looks it up again
    if not (settings.INGEST_FAST_PATH and db.vendor == "postgresql") or rejected or len(valid) != 1:
        return None
    token_hash = Meter.token_hash_of(token)
    if token_hash is None:
        return None
    reading = valid[0][1]
    billed_from, latest = billing_window(now)
    # As text: PostgreSQL reads them as the function's types, and psycopg's datetime and Decimal
    # dumpers cost more than the isoformat() and str() of values known to be UTC and finite.
    params = [
        token_hash,
        reading.utc_timestamp.isoformat(),
        str(reading.register_kwh),
        now.isoformat(),
        billed_from.isoformat(),
        latest.isoformat(),
        ratelimit.window_of(now),
        settings.INGEST_RATE_LIMIT_PER_MINUTE,
    ]
    scope = transaction.atomic() if db.in_atomic_block else contextlib.nullcontext()
    try:
        with scope, _cursor(db) as cursor:
            cursor.execute(_STATEMENT, params)
            outcome, household_id = cursor.fetchone()
    except DatabaseError:
        # Nothing was written (the statement is all or nothing). The connection is checked before
        # its next use, and the Python path tries again, answering 503 itself if the database is away.
        db.health_check_done = False
        log.warning("ingest_fast_path_failed", exc_info=True)
        return None
    if outcome == "accepted":
        metrics.ACCEPTED.inc()
        usage_changed(household_id)
        return HttpResponse(ACCEPTED, content_type="application/json")
    if outcome == "duplicate":
        metrics.DUPLICATE.inc()
        return HttpResponse(DUPLICATE, content_type="application/json")
    return None


def _cursor(db: BaseDatabaseWrapper) -> CursorWrapper:
    """A Django cursor over a psycopg cursor that binds parameters on the server, without a health check.

    Server-side binding lets psycopg prepare the statement once per connection (no parsing or planning
    per request), where Django's default cursor sends it as text each time. The statement
    is its own health check: CONN_HEALTH_CHECKS's ``SELECT 1`` before it would be a second round trip
    per request, so it is skipped, and asked for again (``health_check_done``) when the statement fails.
    """
    if db.queries_logged:
        # Query logging (DEBUG, a test's query capture) records each statement's text, which a statement
        # bound on the server never has: there the plain cursor runs it as text, recorded like any other.
        return db.cursor()
    db.ensure_connection()
    db.validate_thread_sharing()
    with db.wrap_database_errors:
        if db.connection.prepare_threshold is None:
            # Django creates its connections with psycopg's preparing off. A threshold no count reaches
            # turns it on only for statements run with prepare=True, as this cursor runs them; Django's
            # own cursors bind on the client and never prepare either way.
            db.connection.prepare_threshold = sys.maxsize
        raw = _PreparedCursor(db.connection)
    cursor = db.make_cursor(raw)
    db.health_check_done = True
    return cursor


class _PreparedCursor(psycopg.Cursor):
    """A cursor that prepares what it runs, once per connection (Django's cursor wrapper passes no
    ``prepare`` to ``execute``)."""

    def execute(self, query, params=None, *, prepare=True, binary=None):
        return super().execute(query, params, prepare=prepare, binary=binary)
