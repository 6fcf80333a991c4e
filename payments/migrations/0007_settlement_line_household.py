"""Settlement lines carry their household, and point at usage lines without a database constraint.

The household (copied from each line's settlement) is the distribution key a sharded database needs,
as on readings and usage lines. The foreign key to the usage line loses its database constraint
because meters/0006 partitions the ledger by hour on PostgreSQL, where a foreign key can no longer
point at ``id`` alone: this migration runs before that one.
"""

import django.db.models.deletion
from django.db import migrations, models

FILL = (
    "UPDATE payments_settlementline SET household_id = "
    "(SELECT household_id FROM payments_settlement WHERE payments_settlement.id = payments_settlementline.settlement_id)"
)


class Migration(migrations.Migration):
    dependencies = [
        ("meters", "0005_reading_household_usage_tax"),
        ("payments", "0006_outgoing_payment_lifecycle"),
    ]
    run_before = [("meters", "0006_partitioned_storage")]

    operations = [
        migrations.AlterField(
            model_name="settlementline",
            name="usage",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="settlement_lines",
                to="meters.hourlyusage",
            ),
        ),
        migrations.AddField(
            model_name="settlementline",
            name="household",
            field=models.ForeignKey(
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="meters.household",
            ),
        ),
        migrations.RunSQL(FILL, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="settlementline",
            name="household",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="meters.household",
            ),
        ),
    ]
