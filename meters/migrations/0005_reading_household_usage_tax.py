"""Readings carry their household (a distribution key), and usage lines their taxes.

The household is copied from each reading's meter; taxes start at zero until tax rules exist.
"""

from decimal import Decimal

import django.db.models.deletion
from django.db import migrations, models

FILL = (
    "UPDATE meters_reading SET household_id = "
    "(SELECT household_id FROM meters_meter WHERE meters_meter.id = meters_reading.meter_id)"
)


class Migration(migrations.Migration):
    dependencies = [("meters", "0004_household_usage_version")]

    operations = [
        migrations.AddField(
            model_name="reading",
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
            model_name="reading",
            name="household",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="meters.household",
            ),
        ),
        migrations.AddField(
            model_name="hourlyusage",
            name="tax_rate",
            field=models.DecimalField(decimal_places=12, default=Decimal("0"), max_digits=16),
        ),
        migrations.AddField(
            model_name="hourlyusage",
            name="tax_eur",
            field=models.DecimalField(blank=True, decimal_places=6, max_digits=15, null=True),
        ),
        migrations.RunSQL(
            "UPDATE meters_hourlyusage SET tax_eur = 0 WHERE cost_eur IS NOT NULL", migrations.RunSQL.noop
        ),
    ]
