"""Readings and the hourly ledger partitioned by time on PostgreSQL: the migration, the job, the command.

A reading for a period without a partition is stored (the DEFAULT partition catches it) and the job
moves it into a partition of its own; nothing is refused, lost or dropped. SQLite keeps plain tables.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum
from django.test import Client

from meters import partitions
from meters.models import HourlyUsage, Reading
from meters.partitions import Span
from payments.models import Settlement, SettlementLine
from tests.meters.ingestkit import accepted

postgres_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="partitions are PostgreSQL's")
# Far ahead of the migration's partitions (made around the real clock), so this month has none yet.
NOW = datetime(2031, 5, 10, 14, 7, tzinfo=UTC)
TABLES = ("meters_reading", "meters_hourlyusage")


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def where_rows_live(table: str, ids: list[int]) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT tableoid::regclass::text FROM {table} WHERE id = ANY(%s)", [ids])  # noqa: S608
        return {name for (name,) in cursor.fetchall()}


def partition_names(table: str) -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = %s::regclass", [table])
        return {name for (name,) in cursor.fetchall()}


def run_command(*args: str) -> str:
    out = io.StringIO()
    call_command("ensure_partitions", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --- Periods (both databases) ----------------------------------------------------------------------


def test_periods_are_utc_months_weeks_from_monday_and_days():
    moment = datetime(2031, 12, 31, 23, 30, tzinfo=UTC)
    assert partitions.period(moment, "month") == Span(at(2031, 12, 1), at(2032, 1, 1))
    assert partitions.period(moment, "week") == Span(at(2031, 12, 29), at(2032, 1, 5))  # a Monday
    assert partitions.period(moment, "day") == Span(at(2031, 12, 31), at(2032, 1, 1))
    assert partitions.periods_ahead(moment, "month", 2)[-1] == Span(at(2032, 2, 1), at(2032, 3, 1))


def test_only_the_part_of_a_period_no_partition_covers_is_made():
    may = Span(at(2031, 5, 1), at(2031, 6, 1))
    days = [Span(at(2031, 5, 1), at(2031, 5, 2)), Span(at(2031, 5, 2), at(2031, 5, 3))]
    assert partitions.uncovered(may, days) == [Span(at(2031, 5, 3), at(2031, 6, 1))]
    assert partitions.uncovered(days[0], [may]) == []
    assert partitions.uncovered(may, []) == [may]


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite keeps plain tables")
def test_on_sqlite_the_command_says_there_is_nothing_to_do(db):
    assert "nothing to do" in run_command()
    assert partitions.ensure_partitions(NOW).as_json() == {"created": [], "moved": 0, "failed": []}


# --- PostgreSQL ------------------------------------------------------------------------------------


@postgres_only
@pytest.mark.django_db
def test_a_migrated_database_holds_both_tables_range_partitioned_by_time():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.partrelid::regclass::text, p.partstrat, a.attname FROM pg_partitioned_table p "
            "JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]"
        )
        found = {table: (strategy, column) for table, strategy, column in cursor.fetchall()}
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid IN ('meters_reading'::regclass, 'meters_hourlyusage'::regclass) AND contype = 'p'"
        )
        primary_keys = dict(cursor.fetchall())
        cursor.execute("SELECT count(*) FROM pg_constraint WHERE confrelid = 'meters_hourlyusage'::regclass")
        (pointing_at_usage,) = cursor.fetchone()
        cursor.execute("SELECT pg_get_serial_sequence('meters_reading', 'id')")
        (sequence,) = cursor.fetchone()
    assert found["meters_reading"] == ("r", "timestamp")
    assert found["meters_hourlyusage"] == ("r", "hour_start")
    assert primary_keys == {
        "meters_reading_pkey": 'PRIMARY KEY (id, "timestamp")',
        "meters_hourlyusage_pkey": "PRIMARY KEY (id, hour_start)",
    }
    assert pointing_at_usage == 0  # settlement lines keep their link without a database constraint
    assert sequence == "public.meters_reading_id_seq"
    for table in TABLES:
        assert f"{table}_default" in partition_names(table)
        this_month = partitions.period_start(datetime.now(UTC), "month")
        assert partitions.partition_name(table, this_month) in partition_names(table)


@postgres_only
@pytest.mark.django_db
def test_the_constraints_and_indexes_keep_the_names_django_knows():
    expected = {
        "reading_unique_meter_timestamp",
        "reading_received_at",
        "usage_unique_meter_line",
        "usage_unique_standing_line",
        "usage_one_open_meter_line",
        "usage_one_open_standing_line",
        "usage_household_hour",
        "usage_open_lines",
    }
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "meters_reading")
        constraints |= connection.introspection.get_constraints(cursor, "meters_hourlyusage")
    assert expected <= set(constraints)
    assert constraints["reading_unique_meter_timestamp"]["unique"]
    assert constraints["usage_one_open_meter_line"]["unique"]


@postgres_only
@pytest.mark.django_db
def test_the_job_makes_partitions_ahead_and_a_second_run_makes_none():
    first = partitions.ensure_partitions(NOW, interval="month", ahead=2)
    again = partitions.ensure_partitions(NOW, interval="month", ahead=2)

    months = [at(2031, 5, 1), at(2031, 6, 1), at(2031, 7, 1)]
    assert sorted(first.created) == sorted(partitions.partition_name(t, m) for t in TABLES for m in months)
    assert again.as_json() == {"created": [], "moved": 0, "failed": []}
    assert partitions.partition_name("meters_reading", at(2031, 8, 1)) not in partition_names("meters_reading")


@postgres_only
@pytest.mark.django_db
def test_a_reading_for_a_month_without_partition_is_stored_and_the_job_moves_it_to_its_own(make_meter):
    meter, token = make_meter()
    client = Client()
    readings = [{"timestamp": f"2031-05-10T{h:02d}:00:00Z", "energy_kwh": f"{100 + h}.000"} for h in range(10, 14)]
    with time_machine.travel(NOW, tick=False):
        answer = accepted(client, token, readings)
    reading_ids = list(Reading.objects.filter(meter=meter).values_list("pk", flat=True))
    usage_ids = list(HourlyUsage.objects.filter(household=meter.household).values_list("pk", flat=True))
    kwh = HourlyUsage.objects.filter(meter=meter).aggregate(total=Sum("kwh"))["total"]

    assert answer["accepted"] == 4  # never refused
    assert where_rows_live("meters_reading", reading_ids) == {"meters_reading_default"}
    assert where_rows_live("meters_hourlyusage", usage_ids) == {"meters_hourlyusage_default"}

    report = partitions.ensure_partitions(NOW, interval="month", ahead=0)

    assert report.moved == len(reading_ids) + len(usage_ids)
    assert where_rows_live("meters_reading", reading_ids) == {"meters_reading_p20310501"}
    assert where_rows_live("meters_hourlyusage", usage_ids) == {"meters_hourlyusage_p20310501"}
    # The same rows, ids and amounts: nothing lost, nothing doubled.
    assert sorted(Reading.objects.filter(meter=meter).values_list("pk", flat=True)) == sorted(reading_ids)
    assert HourlyUsage.objects.filter(meter=meter).aggregate(total=Sum("kwh"))["total"] == kwh == Decimal(3)
    # Ingest carries on into the new partition, and the open hour's line is updated where it now lives.
    with time_machine.travel(NOW + timedelta(minutes=50), tick=False):
        assert accepted(client, token, [{"timestamp": "2031-05-10T14:30:00Z", "energy_kwh": "113.500"}])["accepted"]
    assert HourlyUsage.objects.filter(meter=meter).aggregate(total=Sum("kwh"))["total"] == Decimal("3.5")
    assert where_rows_live("meters_reading", list(Reading.objects.values_list("pk", flat=True))) == {
        "meters_reading_p20310501"
    }


@postgres_only
@pytest.mark.django_db
def test_a_late_reading_for_a_past_month_without_partition_gets_one_and_the_rest_is_left_alone(make_meter):
    meter, _ = make_meter()
    old = Reading.objects.create(
        meter=meter, household=meter.household, timestamp=at(2021, 3, 4, 5), energy_kwh=1, received_at=NOW
    )
    partitions.ensure_partitions(NOW, interval="month", ahead=0)

    assert where_rows_live("meters_reading", [old.pk]) == {"meters_reading_p20210301"}
    # Only the caught month and this one: no partition for the months between, nothing dropped.
    assert partitions.partition_name("meters_reading", at(2021, 4, 1)) not in partition_names("meters_reading")


@postgres_only
@pytest.mark.django_db
def test_week_or_day_partitions_fill_only_what_month_partitions_leave_uncovered():
    partitions.ensure_partitions(NOW, interval="month", ahead=0)  # May 2031
    report = partitions.ensure_partitions(at(2031, 5, 30, 12), interval="day", ahead=4)

    assert sorted(name for name in report.created if name.startswith("meters_reading_")) == [
        "meters_reading_p20310601",
        "meters_reading_p20310602",
        "meters_reading_p20310603",
    ]
    week = partitions.ensure_partitions(at(2031, 6, 2), interval="week", ahead=1)  # Mondays 2 and 9 June
    assert sorted(name for name in week.created if name.startswith("meters_reading_")) == [
        "meters_reading_p20310604",  # the rest of the week of 2 June
        "meters_reading_p20310609",
    ]


@pytest.mark.django_db
def test_beat_runs_the_job_hourly_and_it_reports_what_it_did(settings):
    from meters.tasks import ensure_partitions

    entry = settings.CELERY_BEAT_SCHEDULE["ensure-partitions"]
    with time_machine.travel(NOW, tick=False):
        report = ensure_partitions.apply().get()

    assert entry["task"] == "meters.tasks.ensure_partitions"
    assert report["failed"] == []
    if connection.vendor == "postgresql":
        assert "meters_reading_p20310501" in report["created"]
    else:
        assert report["created"] == []


@postgres_only
@pytest.mark.django_db
def test_the_command_creates_ahead_and_says_what_it_did(settings):
    settings.PARTITION_INTERVAL = "month"
    with time_machine.travel(NOW, tick=False):
        out = run_command("--ahead", "1")
        again = run_command("--ahead", "1")

    assert "Created 4 month partitions" in out and "meters_hourlyusage_p20310601" in out
    assert "Every month partition needed exists." in again


@postgres_only
@pytest.mark.django_db
def test_since_makes_every_period_from_then_before_history_is_loaded():
    with time_machine.travel(NOW, tick=False):
        out = run_command("--since", "2031-03-15", "--ahead", "0")

    assert "meters_reading_p20310301" in out and "meters_reading_p20310501" in out
    assert partitions.partition_name("meters_reading", at(2031, 4, 1)) in partition_names("meters_reading")


@pytest.mark.django_db
def test_a_bad_since_is_refused_with_a_message():
    with pytest.raises(CommandError, match="since"):
        run_command("--since", "last week")


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_migrating_moves_every_row_into_its_month_and_ids_go_on_after_them(make_meter, settings):
    """meters/0006 both ways on a database with readings, usage lines and a settlement line that points at one."""
    settings.PARTITION_INTERVAL = "month"
    meter, _ = make_meter()  # made with today's models: the household table is not the subject
    executor = MigrationExecutor(connection)
    executor.migrate([("meters", "0005_reading_household_usage_tax")])
    with connection.cursor() as cursor:
        assert not partitions.is_partitioned(cursor, "meters_reading")
    times = [at(2025, 1, 31, 23, 45), at(2025, 2, 1, 0, 15), at(2025, 3, 15, 12)]
    readings = Reading.objects.bulk_create(
        Reading(meter=meter, household=meter.household, timestamp=t, energy_kwh=n, received_at=t)
        for n, t in enumerate(times)
    )
    lines = HourlyUsage.objects.bulk_create(
        HourlyUsage(household=meter.household, meter=meter, hour_start=t.replace(minute=0), kwh=1, cost_eur=1)
        for t in times
    )
    settlement = Settlement.objects.create(
        household=meter.household,
        period_start=times[0],
        period_end=times[-1],
        kwh=3,
        eur=3,
        quote=_quote(),
        satoshis=1,
        fee_satoshis=1,
    )
    SettlementLine.objects.create(settlement=settlement, usage=lines[0], household=meter.household, eur=1)

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert where_rows_live("meters_reading", [readings[0].pk]) == {"meters_reading_p20250101"}
    assert where_rows_live("meters_reading", [r.pk for r in readings[1:]]) == {
        "meters_reading_p20250201",
        "meters_reading_p20250301",
    }
    assert where_rows_live("meters_hourlyusage", [line.pk for line in lines]) == {
        "meters_hourlyusage_p20250101",
        "meters_hourlyusage_p20250201",
        "meters_hourlyusage_p20250301",
    }
    assert SettlementLine.objects.get().usage == lines[0]
    assert list(Reading.objects.order_by("pk").values_list("timestamp", flat=True)) == times
    later = Reading.objects.create(
        meter=meter, household=meter.household, timestamp=at(2025, 3, 16), energy_kwh=9, received_at=at(2025, 3, 16)
    )
    assert later.pk > max(r.pk for r in readings)


def _quote():
    from payments.models import PriceQuote

    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW)
