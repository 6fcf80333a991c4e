"""Drop the indexes the settlement worker writes and nobody reads (docs/benchmarks.md, settlement).

Each settled household writes a coin three times (change, reserved, spent), a settlement twice and
the local ledger's outputs; every index on those tables is written each time. Dropped: foreign-key
indexes that a composite index already begins with (utxo.wallet, settlement.household,
ledgeroutput.transaction), the LIKE indexes PostgreSQL gets for unique or indexed text fields
(ledger txids and addresses, which are only ever matched exactly), and the reservation indexes
on coins now kept only where a coin is reserved.

Only the indexes are dropped: Django's own AlterField would also drop and re-add each foreign key,
which validates every row of tables that grow by a row per household an hour.
"""

import django.db.models.deletion
from django.db import migrations, models

OLD_INDEXES = {
    # name: (table, column, LIKE index: PostgreSQL only)
    "payments_ledgeroutput_address_f896a6cd": ("payments_ledgeroutput", "address", False),
    "payments_ledgeroutput_address_f896a6cd_like": ("payments_ledgeroutput", "address", True),
    "payments_ledgeroutput_transaction_id_404a66ba": ("payments_ledgeroutput", "transaction_id", False),
    "payments_ledgertransaction_txid_3437a25f_like": ("payments_ledgertransaction", "txid", True),
    "payments_settlement_household_id_14eaf897": ("payments_settlement", "household_id", False),
    "payments_utxo_reserved_by_id_c535f931": ("payments_utxo", "reserved_by_id", False),
    "payments_utxo_reserved_by_pass_id_050a837e": ("payments_utxo", "reserved_by_pass_id", False),
    "payments_utxo_wallet_id_8970c0c5": ("payments_utxo", "wallet_id", False),
}
TXID_KEY = "payments_ledgertransaction_txid_key"  # PostgreSQL's name for the unique=True constraint


def drop_old_indexes(apps, schema_editor):
    for name in OLD_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'ALTER TABLE "payments_ledgertransaction" DROP CONSTRAINT IF EXISTS "{TXID_KEY}"')


def restore_old_indexes(apps, schema_editor):
    postgresql = schema_editor.connection.vendor == "postgresql"
    for name, (table, column, like) in OLD_INDEXES.items():
        if like and not postgresql:
            continue
        ops = " varchar_pattern_ops" if like else ""
        schema_editor.execute(f'CREATE INDEX "{name}" ON "{table}" ("{column}"{ops})')
    if postgresql:
        schema_editor.execute(f'ALTER TABLE "payments_ledgertransaction" ADD CONSTRAINT "{TXID_KEY}" UNIQUE ("txid")')
    else:  # SQLite rebuilt the table without the constraint when the new one was removed
        schema_editor.execute(
            f'CREATE UNIQUE INDEX IF NOT EXISTS "{TXID_KEY}" ON "payments_ledgertransaction" ("txid")'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("meters", "0004_household_usage_version"),
        ("payments", "0007_settlement_line_household"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="ledgeroutput",
                    name="address",
                    field=models.CharField(blank=True, max_length=64),
                ),
                migrations.AlterField(
                    model_name="ledgeroutput",
                    name="transaction",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="outputs",
                        to="payments.ledgertransaction",
                    ),
                ),
                migrations.AlterField(
                    model_name="ledgertransaction",
                    name="txid",
                    field=models.CharField(max_length=64),
                ),
                migrations.AlterField(
                    model_name="settlement",
                    name="household",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="settlements",
                        to="meters.household",
                    ),
                ),
                migrations.AlterField(
                    model_name="utxo",
                    name="reserved_by",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="inputs",
                        to="payments.settlement",
                    ),
                ),
                migrations.AlterField(
                    model_name="utxo",
                    name="reserved_by_pass",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="inputs",
                        to="payments.communitypass",
                    ),
                ),
                migrations.AlterField(
                    model_name="utxo",
                    name="wallet",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="utxos",
                        to="payments.wallet",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_old_indexes, restore_old_indexes)],
        ),
        migrations.AddIndex(
            model_name="ledgeroutput",
            index=models.Index(fields=["address"], name="ledger_output_address"),
        ),
        migrations.AddIndex(
            model_name="utxo",
            index=models.Index(
                condition=models.Q(("reserved_by__isnull", False)), fields=["reserved_by"], name="utxo_reserved_by"
            ),
        ),
        migrations.AddIndex(
            model_name="utxo",
            index=models.Index(
                condition=models.Q(("reserved_by_pass__isnull", False)),
                fields=["reserved_by_pass"],
                name="utxo_reserved_by_pass",
            ),
        ),
        migrations.AddConstraint(
            model_name="ledgertransaction",
            constraint=models.UniqueConstraint(fields=("txid",), name="ledger_tx_unique_txid"),
        ),
    ]
