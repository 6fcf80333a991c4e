"""The ingest fast path's statements keep one generic plan each, instead of being planned at every call.

PL/pgSQL plans each statement of ``meters_ingest_reading()`` with its parameters for the first five
calls, then keeps a generic plan only if its estimated cost is close. On partitioned tables (readings
and usage lines, by time) the generic plan's estimate counts every partition, so PostgreSQL keeps
planning the INSERT and the UPDATEs at every call: measured with pgbench, one call inside its own
transaction cost 0.52-0.68 ms of the backend's time with the default ``plan_cache_mode`` and
0.27-0.34 ms with generic plans, whose partition pruning happens when they run (5 partitions a table;
with 41 a table, 0.49 vs 0.30 ms in a loop). docs/benchmarks.md has the figures.
"""

from django.db import migrations

SIGNATURE = "meters_ingest_reading(text, timestamptz, numeric, timestamptz, timestamptz, timestamptz, bigint, integer)"


def generic(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER FUNCTION {SIGNATURE} SET plan_cache_mode = force_generic_plan")


def default(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER FUNCTION {SIGNATURE} RESET plan_cache_mode")


class Migration(migrations.Migration):
    dependencies = [("meters", "0016_tariff_tolls_and_charges")]

    operations = [migrations.RunPython(generic, default, elidable=False)]
