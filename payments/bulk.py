"""Inserting a chunk's rows at once: COPY on PostgreSQL, the ORM's ``bulk_create`` elsewhere (SQLite).

The settlement worker writes several rows per household and hour (a settlement, its lines, its
change coin; on the local ledger the transaction and its outputs). Through ``bulk_create`` each row
is a model instance whose every field Django prepares one by one: measured here, 0.08 ms of Python
a row, more than signing the payment. COPY writes the same rows for a seventh of that (psycopg
formats them in C) and a third of the database time (tests/bench/settlement.py). meters/ingest.py
copies readings the same way.

The rows carry plain values (int, str, Decimal, datetime, bool, None): what the fields store, already
in their final form (amounts quantized to the field's places), since COPY bypasses the fields'
``get_db_prep_save``. Fields left out get what the ORM would give them: ``timezone.now()`` for
``auto_now``/``auto_now_add``, else ``field.get_default()`` (its default, "" or NULL). Constraints
and foreign keys are checked by the database as for any INSERT.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from functools import cache

from django.core.exceptions import EmptyResultSet
from django.db import connection, models
from django.db.models import F, Lookup
from django.utils import timezone

_NOW = object()  # stands for timezone.now(), taken once per insert
_PLAIN = re.compile(r"[0-9A-Za-z_]+")  # texts an array literal takes as they are


def insert(
    model: type[models.Model], fields: Sequence[str], rows: Sequence[Sequence], *, ids: bool = False
) -> list[int]:
    """Insert ``rows`` (each the values of ``fields``, attribute names such as ``wallet_id``, in order).

    Returns the new primary keys in the order of ``rows`` when ``ids`` is set, else an empty list.
    """
    if not rows:
        return []
    fields = tuple(fields)
    filled, makers = _filled(model, fields)
    now = timezone.now()
    tail = tuple(now if maker is _NOW else maker() for maker in makers)
    if connection.vendor != "postgresql":
        extra = dict(zip(filled, tail, strict=True))
        created = model.objects.bulk_create([model(**dict(zip(fields, row, strict=True)), **extra) for row in rows])
        return [instance.pk for instance in created] if ids else []
    columns = [model._meta.get_field(name).column for name in (*fields, *filled)]
    with connection.cursor() as cursor:
        keys: list[int] = []
        if ids:
            # Taken from the table's own sequence, so the ids are the ones an INSERT would have drawn.
            cursor.execute("SELECT nextval(%s) FROM generate_series(1, %s)", [_sequence(model), len(rows)])
            keys = [row[0] for row in cursor.fetchall()]
            columns.insert(0, model._meta.pk.column)
        sql = f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN"
        # Through psycopg's own cursor (Django's has no COPY): its errors become Django's, as in execute().
        with connection.wrap_database_errors, cursor.cursor.copy(sql) as copy:
            if ids:
                for key, row in zip(keys, rows, strict=True):
                    copy.write_row((key, *row, *tail))
            else:
                for row in rows:
                    copy.write_row((*row, *tail))
    return keys


@cache
def _filled(model: type[models.Model], fields: tuple[str, ...]) -> tuple[tuple[str, ...], tuple]:
    """The concrete fields ``fields`` leave out, other than the primary key, and what makes each one's value."""
    given = set(fields)
    names, makers = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in given:
            continue
        auto = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        names.append(field.attname)
        makers.append(_NOW if auto else field.get_default)  # as a new model instance would have it
    return tuple(names), tuple(makers)


@cache
def _sequence(model: type[models.Model]) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [model._meta.db_table, model._meta.pk.column])
        return cursor.fetchone()[0]


def assign(
    model: type[models.Model],
    field: str,
    pairs: Sequence[tuple[int, int]],
    *,
    where: dict[str, object] | None = None,
    also: dict[str, object] | None = None,
) -> int:
    """Set ``field`` (an integer, a foreign key) to each row's own value, ``pairs`` of (primary key, value),
    in one UPDATE; returns how many rows changed.

    Only rows that also match ``where`` (field name -> value; None means IS NULL) change, so a caller
    that claims rows compares the count with ``len(pairs)``: a row claimed by someone else meanwhile
    leaves it short. ``also`` sets more fields to one value on every row changed.

    PostgreSQL joins the rows to two arrays (each sent as one literal, so the statement is the same
    text whatever the number of rows, and no per-row CASE branch is searched); elsewhere a CASE.
    """
    if not pairs:
        return 0
    where, also = where or {}, also or {}
    table, pk = model._meta.db_table, model._meta.pk.column
    column = model._meta.get_field(field).column
    extra_sets = [f"{model._meta.get_field(name).column} = %s" for name in also]
    conditions, condition_params = [], []
    for name, value in where.items():
        target = f"{table}.{model._meta.get_field(name).column}"
        if value is None:
            conditions.append(f"{target} IS NULL")
        else:
            conditions.append(f"{target} = %s")
            condition_params.append(value)
    # Table and column names come from the model; every value is a parameter.
    if connection.vendor == "postgresql":
        keys = "{" + ",".join(str(int(key)) for key, _ in pairs) + "}"
        values = "{" + ",".join(str(int(value)) for _, value in pairs) + "}"
        sets = ", ".join([f"{column} = v.value", *extra_sets])
        matches = " AND ".join([f"{table}.{pk} = v.id", *conditions])
        sql = f"UPDATE {table} SET {sets} FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, value) WHERE {matches}"  # noqa: S608
        params = [*also.values(), keys, values, *condition_params]
    else:
        branches = " ".join(["WHEN %s THEN %s"] * len(pairs))
        sets = ", ".join([f"{column} = CASE {pk} {branches} END", *extra_sets])
        listed = ", ".join(["%s"] * len(pairs))
        matches = " AND ".join([f"{pk} IN ({listed})", *conditions])
        sql = f"UPDATE {table} SET {sets} WHERE {matches}"  # noqa: S608
        params = [*(item for pair in pairs for item in pair), *also.values(), *(key for key, _ in pairs)]
        params += condition_params
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def among(field: str, values: Collection[int] | Collection[str]) -> Lookup:
    """A filter: ``field`` is one of ``values`` (ids, or txids), as ``field__in`` but cheap for a chunk's worth.

    ``pk__in`` with 500 ids costs Django and psycopg a parameter each, and PostgreSQL a constant
    each to parse and plan: about 3 ms of Python and 1-2 ms of the server's time per query, measured
    here. This sends one array instead (``= ANY``): integers as one literal, texts as one array
    parameter. Elsewhere (SQLite) it is an ordinary IN.
    """
    return _Among(F(field), list(values))


class _Among(Lookup):
    lookup_name = "among"  # used as an expression (Django 4+ takes lookups in filter()), never registered
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, params = self.process_lhs(compiler, connection)
        values = self.rhs
        if not values:
            raise EmptyResultSet
        if connection.vendor != "postgresql":
            return f"{lhs} IN ({', '.join(['%s'] * len(values))})", [*params, *values]
        if all(type(value) is int for value in values):
            return f"{lhs} = ANY(%s::bigint[])", [*params, "{" + ",".join(map(str, values)) + "}"]
        if all(_PLAIN.fullmatch(value) for value in values):  # txids: nothing to quote in an array literal
            return f"{lhs} = ANY(%s::text[])", [*params, "{" + ",".join(values) + "}"]
        return f"{lhs} = ANY(%s)", [*params, [str(value) for value in values]]
