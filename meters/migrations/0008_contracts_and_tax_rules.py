"""Tax rules, contracts (effective-dated tariff assignments) and the standing-charge mark.

Every existing household is put under contract on its current tariff, from its first hour in the
ledger (or its creation, if earlier): no hour changes price. The standing-charge job starts at the
hour this runs: hours that passed silently before are not billed after the fact.
"""

from datetime import UTC, datetime
from decimal import Decimal

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.db.models import OuterRef, Subquery
from django.utils import timezone

import meters.models

BATCH = 5000


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def record_contracts(apps, schema_editor):
    Household = apps.get_model("meters", "Household")
    HourlyUsage = apps.get_model("meters", "HourlyUsage")
    TariffAssignment = apps.get_model("meters", "TariffAssignment")
    StandingMark = apps.get_model("meters", "StandingMark")
    first_line = HourlyUsage.objects.filter(household=OuterRef("pk")).order_by("hour_start").values("hour_start")[:1]
    rows = (
        Household.objects.annotate(first=Subquery(first_line))
        .order_by("pk")
        .values_list("pk", "tariff_id", "created_at", "first")
    )
    batch = []
    for pk, tariff_id, created_at, first in rows.iterator(chunk_size=BATCH):
        start = min(_floor_hour(created_at), first or _floor_hour(created_at))
        batch.append(TariffAssignment(household_id=pk, tariff_id=tariff_id, valid_from=start))
        if len(batch) >= BATCH:
            TariffAssignment.objects.bulk_create(batch)
            batch = []
    TariffAssignment.objects.bulk_create(batch)
    since = TariffAssignment.objects.filter(household=OuterRef("pk")).values("valid_from")[:1]
    Household.objects.update(tariff_since=Subquery(since))
    StandingMark.objects.create(pk=1, accrued_until=_floor_hour(timezone.now()))


def forget_contracts(apps, schema_editor):
    apps.get_model("meters", "TariffAssignment").objects.all().delete()
    apps.get_model("meters", "StandingMark").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("meters", "0007_ingest_fast_path"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="StandingMark",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("accrued_until", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="TariffAssignment",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "valid_from",
                    models.DateTimeField(
                        help_text="On the hour (UTC). Prices every hour from here to the next change."
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["household", "valid_from"],
            },
        ),
        migrations.CreateModel(
            name="TaxRule",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "tax",
                    models.SlugField(
                        help_text='The tax this is a rate of, whatever the rate: "iva", "iee", "igic".', max_length=40
                    ),
                ),
                (
                    "name",
                    models.CharField(
                        help_text='As the statement shows it: "IVA 21%", "Impuesto especial sobre la electricidad".',
                        max_length=120,
                    ),
                ),
                (
                    "rate",
                    models.DecimalField(
                        decimal_places=10,
                        help_text="A fraction, not a percentage: 0.21 for 21%, 0.0511269632 for 5.11269632%.",
                        max_digits=11,
                        validators=[django.core.validators.MinValueValidator(Decimal("0"))],
                    ),
                ),
                (
                    "kinds",
                    models.JSONField(
                        default=list,
                        help_text="The kinds of ledger line it taxes (energy, standing charge, ...).",
                        verbose_name="applies to",
                    ),
                ),
                (
                    "compound",
                    models.BooleanField(
                        default=False,
                        help_text="Its base is the line's cost plus the line's simple taxes, as VAT's base has the electricity tax.",
                        verbose_name="base includes other taxes",
                    ),
                ),
                (
                    "region",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("peninsula", "Peninsula and Balearic Islands"),
                            ("canarias", "Canary Islands"),
                            ("ceuta_melilla", "Ceuta and Melilla"),
                        ],
                        help_text="Households of this tax region; blank: every region.",
                        max_length=20,
                    ),
                ),
                ("valid_from", models.DateField(help_text="First local day it applies to.")),
                (
                    "valid_to",
                    models.DateField(
                        blank=True, help_text="Last local day it applies to; blank: until changed.", null=True
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["tax", "region", "valid_from"],
            },
        ),
        migrations.AddField(
            model_name="household",
            name="region",
            field=models.CharField(
                choices=[
                    ("peninsula", "Peninsula and Balearic Islands"),
                    ("canarias", "Canary Islands"),
                    ("ceuta_melilla", "Ceuta and Melilla"),
                ],
                default="peninsula",
                help_text="Decides which tax rules apply; fixed once the household has been billed.",
                max_length=20,
                verbose_name="tax region",
            ),
        ),
        migrations.AddField(
            model_name="household",
            name="tariff_since",
            field=models.DateTimeField(
                blank=True,
                editable=False,
                help_text="Start of the current tariff; none: no contract recorded.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="household",
            name="tariff_until",
            field=models.DateTimeField(
                blank=True, editable=False, help_text="Start of the next planned tariff change, if any.", null=True
            ),
        ),
        migrations.AlterField(
            model_name="hourlyusage",
            name="tax_rate",
            field=models.DecimalField(decimal_places=20, default=Decimal("0"), max_digits=24),
        ),
        migrations.AlterField(
            model_name="household",
            name="timezone",
            field=models.CharField(
                default="Europe/Madrid",
                help_text="Decides the household's days (standing charge, tax dates); fixed once it has been billed.",
                max_length=64,
                validators=[meters.models.validate_timezone],
            ),
        ),
        migrations.AddIndex(
            model_name="household",
            index=models.Index(
                condition=models.Q(("tariff_until__isnull", False)),
                fields=["tariff_until"],
                name="household_tariff_due",
            ),
        ),
        migrations.AddField(
            model_name="tariffassignment",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="tariffassignment",
            name="household",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="tariff_assignments", to="meters.household"
            ),
        ),
        migrations.AddField(
            model_name="tariffassignment",
            name="tariff",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="assignments", to="meters.tariff"
            ),
        ),
        migrations.AddField(
            model_name="taxrule",
            name="tariffs",
            field=models.ManyToManyField(
                blank=True,
                help_text="Households on these tariffs; none: every tariff.",
                related_name="tax_rules",
                to="meters.tariff",
            ),
        ),
        migrations.AddConstraint(
            model_name="tariffassignment",
            constraint=models.UniqueConstraint(
                fields=("household", "valid_from"), name="tariff_assignment_unique_start"
            ),
        ),
        migrations.AddConstraint(
            model_name="taxrule",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("valid_to__isnull", True), ("valid_to__gte", models.F("valid_from")), _connector="OR"
                ),
                name="tax_rule_dates_in_order",
            ),
        ),
        migrations.AddConstraint(
            model_name="taxrule",
            constraint=models.CheckConstraint(
                condition=models.Q(("rate__gte", 0), ("rate__lte", 1)), name="tax_rule_rate_fraction"
            ),
        ),
        migrations.RunPython(record_contracts, forget_contracts),
    ]
