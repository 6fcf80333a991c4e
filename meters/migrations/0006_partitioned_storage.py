"""On PostgreSQL, readings and the hourly ledger become tables range-partitioned by time.

``meters_reading`` by ``timestamp`` and ``meters_hourlyusage`` by ``hour_start``, one partition per
``PARTITION_INTERVAL`` (a UTC month unless set) for every period that holds rows and from this one to
``PARTITIONS_AHEAD`` ahead, plus a DEFAULT partition for rows of a period with no partition yet
(meters/partitions.py makes the rest and moves such rows out). SQLite keeps plain tables: nothing here.

Each table is rebuilt under a lock that lets readers on and makes writers wait: a new partitioned
table like it, its rows copied, the old table dropped and the new one renamed, its identity sequence
continued where the old one stopped, and every constraint and index put back under the name Django's
migrations know. A partitioned table's unique constraints must include the partition key: the unique
constraints already do, and the primary key becomes (id, time) in the database, while Django's state
keeps ``id`` as the primary key (so this migration changes no state). Nothing may point a foreign key
at ``id`` alone any more: payments' settlement lines keep theirs without a database constraint
(payments/0007 runs before this one).
"""

from __future__ import annotations

from django.conf import settings
from django.db import migrations
from django.utils import timezone

from meters import partitions

TABLES = (("meters_reading", "timestamp"), ("meters_hourlyusage", "hour_start"))
PK = "id"


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    interval, ahead = settings.PARTITION_INTERVAL, settings.PARTITIONS_AHEAD
    with connection.cursor() as cursor:
        for table, key in TABLES:
            if partitions.is_partitioned(cursor, table):
                continue
            cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
            cursor.execute(f'SELECT DISTINCT date_trunc(%s, "{key}", %s) FROM {table}', [interval, "UTC"])  # noqa: S608
            spans = {partitions.period(start, interval) for (start,) in cursor.fetchall()}
            spans |= set(partitions.periods_ahead(timezone.now(), interval, ahead))
            rebuild(cursor, connection, table, key, sorted(spans))


def backwards(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for table, key in TABLES:
            if partitions.is_partitioned(cursor, table):
                cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
                rebuild(cursor, connection, table, key, None)


def rebuild(cursor, connection, table: str, key: str, spans: list[partitions.Span] | None) -> None:
    """Rebuild ``table`` partitioned by ``key`` into ``spans`` (and a DEFAULT partition), or plain if None."""
    qn = connection.ops.quote_name
    cursor.execute(
        "SELECT conrelid::regclass::text, conname FROM pg_constraint "
        "WHERE confrelid = %s::regclass AND conrelid <> confrelid AND contype = 'f'",
        [table],
    )
    if referencing := cursor.fetchall():
        raise RuntimeError(
            f"{table} cannot be rebuilt while foreign keys point at it ({referencing}): give those fields "
            "db_constraint=False first, as payments/0007 does for settlement lines."
        )
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype IN ('p', 'u', 'f', 'x') ORDER BY contype = 'f', conname",
        [table],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s "
        "AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY indexname",
        [table, table],
    )
    indexes = cursor.fetchall()
    cursor.execute("SELECT relname FROM pg_class WHERE oid = pg_get_serial_sequence(%s, %s)::regclass", [table, PK])
    (sequence,) = cursor.fetchone()
    cursor.execute(f"SELECT last_value, is_called FROM {qn(sequence)}")  # noqa: S608 (a name from the catalog)
    last_value, is_called = cursor.fetchone()
    for name, kind, definition in constraints:
        if spans is not None and kind in "ux" and key not in definition:
            raise RuntimeError(f"{table}.{name} ({definition}) must include {key} to be partitioned by it.")
    names = ", ".join(qn(column) for column in partitions.columns(cursor, table))

    new = f"{table}__rebuild"
    how = f" PARTITION BY RANGE ({qn(key)})" if spans is not None else ""
    cursor.execute(
        f"CREATE TABLE {qn(new)} (LIKE {qn(table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY "
        f"INCLUDING STORAGE INCLUDING COMMENTS){how}"
    )
    if spans is not None:
        cursor.execute(f"CREATE TABLE {qn(partitions.default_name(table))} PARTITION OF {qn(new)} DEFAULT")
        for span in spans:
            cursor.execute(
                f"CREATE TABLE {qn(partitions.partition_name(table, span.start))} PARTITION OF {qn(new)} "
                f"FOR VALUES FROM ({partitions.literal(span.start)}) TO ({partitions.literal(span.end)})"
            )
    cursor.execute(f"INSERT INTO {qn(new)} ({names}) SELECT {names} FROM {qn(table)}")  # noqa: S608
    cursor.execute(f"DROP TABLE {qn(table)}")
    cursor.execute(f"ALTER TABLE {qn(new)} RENAME TO {qn(table)}")
    # The new identity's sequence takes the old one's name and goes on from its last value: no id is reused.
    cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [table, PK])
    (new_sequence,) = cursor.fetchone()
    cursor.execute(f"ALTER SEQUENCE {new_sequence} RENAME TO {qn(sequence)}")
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, %s), %s, %s)", [table, PK, last_value, is_called])
    for name, kind, definition in constraints:
        if kind == "p":
            definition = f"PRIMARY KEY ({qn(PK)}, {qn(key)})" if spans is not None else f"PRIMARY KEY ({qn(PK)})"
        cursor.execute(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}")
    for _, definition in indexes:
        cursor.execute(definition)
    cursor.execute(f"ANALYZE {qn(table)}")


class Migration(migrations.Migration):
    dependencies = [("meters", "0005_reading_household_usage_tax")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
