"""Corrective notes become typed facturas rectificativas (issue 18 item 5, docs/spain.md).

The corrective notes issued before this migration were all recorded for VERI*FACTU as R4 by
differences (payments.statements.verifactu.records), so they are typed so here, with the cause the
corrections job had: the ledger of a closed month changed. Issued documents are never changed, and
PostgreSQL's trigger (0002) refuses any UPDATE: this migration turns it off for its one UPDATE of
the three new columns of those notes, and on again, in its own transaction. Nothing else is touched.
"""

from django.conf import settings
from django.db import migrations, models

REASON = "A meter reading or a price received after the statement was issued"  # corrections.LATE_LEDGER_REASON


def type_earlier_notes(apps, schema_editor):
    table = "statements_statement"
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        schema_editor.execute(f"ALTER TABLE {table} DISABLE TRIGGER {table}_final")
    schema_editor.execute(
        "UPDATE statements_statement SET rectification_type = 'R4', rectification_method = 'I', "
        "rectification_reason = %s WHERE kind = 'corrective'",
        params=[REASON],
    )
    if postgres:
        schema_editor.execute(f"ALTER TABLE {table} ENABLE TRIGGER {table}_final")


class Migration(migrations.Migration):
    dependencies = [
        ("meters", "0013_tax_rule_power_limit_and_minimum"),
        ("statements", "0006_record_sending"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="statement",
            name="rectification_method",
            field=models.CharField(
                blank=True,
                choices=[("I", "by differences"), ("S", "by substitution")],
                help_text="Corrective notes: I or S.",
                max_length=1,
            ),
        ),
        migrations.AddField(
            model_name="statement",
            name="rectification_reason",
            field=models.CharField(
                blank=True, help_text="Corrective notes: the cause in words, as the document says it.", max_length=200
            ),
        ),
        migrations.AddField(
            model_name="statement",
            name="rectification_type",
            field=models.CharField(
                blank=True,
                choices=[
                    ("R1", "R1: error founded in law and art. 80 One, Two and Six of the VAT law"),
                    ("R2", "R2: art. 80 Three of the VAT law (insolvency proceedings)"),
                    ("R3", "R3: art. 80 Four of the VAT law (bad debts)"),
                    ("R4", "R4: other causes"),
                ],
                help_text="Corrective notes: the cause, R1-R4.",
                max_length=2,
            ),
        ),
        migrations.RunPython(type_earlier_notes, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="statement",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(
                        ("kind", "statement"),
                        ("rectification_method", ""),
                        ("rectification_reason", ""),
                        ("rectification_type", ""),
                    ),
                    models.Q(
                        ("kind", "corrective"),
                        ("rectification_method__in", ["I", "S"]),
                        ("rectification_type__in", ["R1", "R2", "R3", "R4"]),
                    ),
                    _connector="OR",
                ),
                name="statement_rectification_only_corrective",
            ),
        ),
    ]
