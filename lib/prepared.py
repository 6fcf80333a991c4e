"""Prepared statements on PostgreSQL for the hottest queries: planned once per connection, not per request.

Planning a query can cost PostgreSQL more than running it: a join of four small tables by their keys,
or an aggregate with a GROUP BY, takes ~0.1 ms to plan and less to run, on every request that sends
it. ``fetch`` prepares the statement the first time a connection runs it (``PREPARE name AS ...``)
and sends ``EXECUTE name(...)`` from then on, through Django's cursor, so it is logged and counted as
any query. Inside a transaction, and on other databases, the plain query is sent: a prepared
statement gone missing (a pooler's ``DISCARD ALL`` between clients; docs/operations.md asks for
session pooling) would abort the transaction, while outside one the error costs a PREPARE again.
"""

from __future__ import annotations

import hashlib
import weakref

from django.db import ProgrammingError
from django.db.backends.base.base import BaseDatabaseWrapper

INVALID_STATEMENT_NAME = "26000"  # PostgreSQL: no prepared statement of that name on this connection
# Per psycopg connection (a reconnect starts with none), the names prepared on it.
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def fetch(connection: BaseDatabaseWrapper, name: str, sql: str, params: list | tuple) -> list[tuple]:
    """The rows of ``sql`` (``%s`` placeholders, no other ``%``) with ``params``; prepared as ``name`` on PostgreSQL.

    The name carries a digest of the SQL, so a statement that changes (a new column) is a new one.
    """
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            cursor.execute(sql, params)
            return cursor.fetchall()
        name = f"{name}_{hashlib.sha1(sql.encode(), usedforsecurity=False).hexdigest()[:10]}"
        raw = connection.connection
        try:
            return _execute(cursor, raw, name, sql, params)
        except ProgrammingError as error:
            if getattr(error.__cause__, "sqlstate", None) != INVALID_STATEMENT_NAME:
                raise
            _prepared.get(raw, set()).discard(name)
            return _execute(cursor, raw, name, sql, params)


def _execute(cursor, raw, name: str, sql: str, params: list | tuple) -> list[tuple]:
    names = _prepared.setdefault(raw, set())
    if name not in names:
        numbered = sql.split("%s")
        statement = numbered[0] + "".join(f"${number}{part}" for number, part in enumerate(numbered[1:], 1))
        cursor.execute(f"PREPARE {name} AS {statement}")
        names.add(name)
    cursor.execute(f"EXECUTE {name}({', '.join(['%s'] * len(params))})" if params else f"EXECUTE {name}", params)
    return cursor.fetchall()
