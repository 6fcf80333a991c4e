"""An index on meters_reading.received_at, for the status page's ingest rates.

Counting the readings received in the last 5 minutes or hour must not read the whole table.
PostgreSQL gets a BRIN index: readings are appended in the order they are received, so a block
range summary (a few pages for millions of rows) finds the recent ones, and maintaining it costs
ingest next to nothing (no per-row b-tree insert on the hottest table). SQLite has no BRIN; the
demo database is small, so a plain b-tree is cheap there. The index is outside the Reading model's
state on purpose: the ORM has no BRIN on SQLite, and only this query needs it.
"""

from django.db import migrations

NAME = "reading_received_at"


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT relkind FROM pg_class WHERE oid = 'meters_reading'::regclass")
            partitioned = cursor.fetchone()[0] == "p"
        # CONCURRENTLY keeps ingest writing while a large table is indexed; a partitioned table
        # cannot be indexed concurrently, but its CREATE INDEX builds one per partition.
        how = "" if partitioned else "CONCURRENTLY "
        schema_editor.execute(f"CREATE INDEX {how}IF NOT EXISTS {NAME} ON meters_reading USING brin (received_at)")
    elif connection.vendor == "sqlite":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON meters_reading (received_at)")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in {"postgresql", "sqlite"}:
        schema_editor.execute(f"DROP INDEX IF EXISTS {NAME}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("ops", "0001_initial"),
        ("meters", "0002_tariff_revision_and_meter_rate"),
    ]

    operations = [migrations.RunPython(create, drop, elidable=False)]
