"""The two series every deployment starts with, and PostgreSQL's refusal to change an issued document.

The models already refuse (``Final``); the trigger makes a raw UPDATE or DELETE fail too, whoever
sends it. TRUNCATE (a test database being emptied) is not a row change and is not refused. A later
migration that must rewrite these rows on purpose drops the trigger and says why.
"""

from django.db import migrations

FINAL_TABLES = ("statements_statement", "statements_statementline", "statements_statementpayment")


def add_series(apps, schema_editor):
    Series = apps.get_model("statements", "Series")
    Series.objects.get_or_create(code="EP", defaults={"purpose": "statement", "name": "Monthly statements"})
    Series.objects.get_or_create(code="EPR", defaults={"purpose": "corrective", "name": "Corrective notes"})


def add_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        """
        CREATE FUNCTION statements_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'issued statements are never changed (% on %): issue a corrective note', TG_OP, TG_TABLE_NAME
                USING ERRCODE = 'restrict_violation';
        END $$
        """,
        params=None,  # the % above are PL/pgSQL's, not placeholders
    )
    for table in FINAL_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_final BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION statements_refuse_change()"
        )


def drop_triggers(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in FINAL_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_final ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS statements_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("statements", "0001_initial")]

    operations = [
        migrations.RunPython(add_series, migrations.RunPython.noop),
        migrations.RunPython(add_triggers, drop_triggers),
    ]
