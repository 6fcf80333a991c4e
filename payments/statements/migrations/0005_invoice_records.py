"""VERI*FACTU invoice records and each issuer's chain head; on PostgreSQL a record refuses UPDATE and DELETE.

The chain head (``statements_invoicerecordchain``) moves with every record, so only the records are final.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TABLE = "statements_invoicerecord"


def add_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        """
        CREATE FUNCTION statements_refuse_record_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'invoice records are never changed (% on %): record an anulacion or a new alta',
                TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
        END $$
        """,
        params=None,  # the % above are PL/pgSQL's, not placeholders
    )
    schema_editor.execute(
        f"CREATE TRIGGER {TABLE}_final BEFORE UPDATE OR DELETE ON {TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION statements_refuse_record_change()"
    )


def drop_trigger(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_final ON {TABLE}")
    schema_editor.execute("DROP FUNCTION IF EXISTS statements_refuse_record_change()")


class Migration(migrations.Migration):
    dependencies = [
        ("statements", "0004_line_kinds_power_rental"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="InvoiceRecordChain",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("issuer_tax_id", models.CharField(max_length=9, unique=True, verbose_name="issuer NIF")),
                (
                    "length",
                    models.PositiveIntegerField(
                        default=0, help_text="Records in the chain: the newest one's position."
                    ),
                ),
                ("last_issuer_tax_id", models.CharField(blank=True, max_length=9)),
                ("last_invoice_number", models.CharField(blank=True, max_length=60)),
                ("last_invoice_date", models.DateField(blank=True, null=True)),
                ("last_hash", models.CharField(blank=True, max_length=64)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["issuer_tax_id"],
            },
        ),
        migrations.CreateModel(
            name="InvoiceRecord",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "position",
                    models.PositiveIntegerField(
                        help_text="1, 2, ...: the order the chain's records were generated in."
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[("alta", "Registro de alta"), ("anulacion", "Registro de anulación")], max_length=10
                    ),
                ),
                ("issuer_tax_id", models.CharField(max_length=9, verbose_name="IDEmisorFactura")),
                ("invoice_number", models.CharField(max_length=60, verbose_name="NumSerieFactura")),
                ("invoice_date", models.DateField(verbose_name="FechaExpedicionFactura")),
                (
                    "invoice_type",
                    models.CharField(
                        blank=True, help_text="F1, F2, R1-R5 (altas).", max_length=2, verbose_name="TipoFactura"
                    ),
                ),
                (
                    "total_tax",
                    models.DecimalField(
                        blank=True, decimal_places=2, max_digits=14, null=True, verbose_name="CuotaTotal"
                    ),
                ),
                (
                    "total",
                    models.DecimalField(
                        blank=True, decimal_places=2, max_digits=14, null=True, verbose_name="ImporteTotal"
                    ),
                ),
                ("previous_issuer_tax_id", models.CharField(blank=True, max_length=9)),
                ("previous_invoice_number", models.CharField(blank=True, max_length=60)),
                ("previous_invoice_date", models.DateField(blank=True, null=True)),
                ("previous_hash", models.CharField(blank=True, max_length=64)),
                ("generated_at", models.DateTimeField()),
                (
                    "generated_text",
                    models.CharField(help_text="As hashed.", max_length=32, verbose_name="FechaHoraHusoGenRegistro"),
                ),
                ("hash", models.CharField(max_length=64, verbose_name="Huella")),
                ("content", models.JSONField(default=dict)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "statement",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="invoice_records",
                        to="statements.statement",
                    ),
                ),
                (
                    "chain",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="records",
                        to="statements.invoicerecordchain",
                    ),
                ),
            ],
            options={
                "ordering": ["chain", "position"],
                "constraints": [
                    models.UniqueConstraint(fields=("chain", "position"), name="invoice_record_position"),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("position", 1), ("previous_hash", "")),
                            models.Q(("position__gt", 1), models.Q(("previous_hash", ""), _negated=True)),
                            _connector="OR",
                        ),
                        name="invoice_record_links_previous",
                    ),
                    models.UniqueConstraint(
                        fields=("statement", "kind"), name="invoice_record_one_per_statement_and_kind"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("kind", "anulacion"),
                            models.Q(models.Q(("invoice_type", ""), _negated=True), ("total__isnull", False)),
                            _connector="OR",
                        ),
                        name="invoice_record_alta_has_type_and_total",
                    ),
                ],
            },
        ),
        migrations.RunPython(add_trigger, drop_trigger),
    ]
