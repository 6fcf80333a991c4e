"""Time-range partitions of the readings and the hourly ledger on PostgreSQL: made ahead, never dropped.

Migration meters/0006 turns ``meters_reading`` (by ``timestamp``) and ``meters_hourlyusage`` (by
``hour_start``) into range-partitioned tables, one partition per ``PARTITION_INTERVAL`` (a UTC month
by default; a week from Monday, or a day), plus a DEFAULT partition. The DEFAULT partition catches a
row whose period has no partition yet (a reading posted a minute after a month began before the
partition existed, a very late backfill): it is stored, never refused. :func:`ensure_partitions`
(beat every hour, ``manage.py ensure_partitions`` on demand) then

1. finds the periods of the rows the DEFAULT partition holds, and the periods from this one to
   ``PARTITIONS_AHEAD`` ahead;
2. for each such period not covered by a partition (only the uncovered part, should the interval
   have changed), in one short transaction: locks the DEFAULT partition, moves its rows of the period
   out, creates and attaches the period's partition, puts the rows back into it.

Nothing is ever dropped or detached. SQLite keeps plain tables, and this does nothing there.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connection, transaction

from meters.models import HourlyUsage, Reading

log = logging.getLogger(__name__)

INTERVALS = ("month", "week", "day")
# Each partitioned model and the column its partitions split on.
PARTITIONED = ((Reading, "timestamp"), (HourlyUsage, "hour_start"))
# A job that cannot get its locks at once gives up and tries again next hour, rather than keep
# ingest queued behind it (ATTACH briefly locks the referenced meter and household tables).
LOCK_TIMEOUT = "3s"
_BOUND = re.compile(r"FOR VALUES FROM \('([^']+)'\) TO \('([^']+)'\)")


@dataclass(frozen=True, order=True)
class Span:
    """A half-open range of time [start, end), in UTC."""

    start: datetime
    end: datetime


@dataclass
class Report:
    created: list[str] = field(default_factory=list)
    moved: int = 0
    failed: list[str] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"created": self.created, "moved": self.moved, "failed": self.failed}


# --- Periods ---------------------------------------------------------------------------------------


def period_start(moment: datetime, interval: str) -> datetime:
    """The start of the UTC month, week (Monday) or day holding ``moment``."""
    moment = moment.astimezone(UTC)
    day = datetime(moment.year, moment.month, moment.day, tzinfo=UTC)
    if interval == "month":
        return day.replace(day=1)
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "day":
        return day
    raise ValueError(f"unknown partition interval {interval!r}; expected one of {', '.join(INTERVALS)}")


def period_end(start: datetime, interval: str) -> datetime:
    if interval == "month":
        return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start + timedelta(days=7 if interval == "week" else 1)


def period(moment: datetime, interval: str) -> Span:
    start = period_start(moment, interval)
    return Span(start, period_end(start, interval))


def periods_ahead(now: datetime, interval: str, ahead: int) -> list[Span]:
    """This period and the ``ahead`` after it."""
    spans = [period(now, interval)]
    for _ in range(ahead):
        spans.append(Span(spans[-1].end, period_end(spans[-1].end, interval)))
    return spans


def uncovered(span: Span, covered: list[Span]) -> list[Span]:
    """The parts of ``span`` no span of ``covered`` holds (they do not overlap one another)."""
    gaps, cursor = [], span.start
    for other in sorted(covered):
        if other.end <= cursor or other.start >= span.end:
            continue
        if other.start > cursor:
            gaps.append(Span(cursor, other.start))
        cursor = max(cursor, other.end)
    if cursor < span.end:
        gaps.append(Span(cursor, span.end))
    return gaps


def partition_name(table: str, start: datetime) -> str:
    return f"{table}_p{start:%Y%m%d}"


def default_name(table: str) -> str:
    return f"{table}_default"


# --- The catalog -----------------------------------------------------------------------------------


def is_partitioned(cursor, table: str) -> bool:
    cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
    row = cursor.fetchone()
    return row is not None and row[0] == "p"


def partitions(cursor, table: str) -> tuple[list[Span], str | None]:
    """The ranges the table's partitions cover, and its DEFAULT partition's name (or None)."""
    cursor.execute(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
        [table],
    )
    spans, default = [], None
    for name, bound in cursor.fetchall():
        if bound == "DEFAULT":
            default = name
        elif match := _BOUND.fullmatch(bound):
            # Literals carry their offset (the session's time zone): fromisoformat reads '+00' too.
            spans.append(Span(*(datetime.fromisoformat(value) for value in match.groups())))
    return sorted(spans), default


def columns(cursor, table: str) -> list[str]:
    cursor.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped "
        "ORDER BY attnum",
        [table],
    )
    return [name for (name,) in cursor.fetchall()]


def literal(moment: datetime) -> str:
    """A timestamptz literal for DDL, which takes no parameters; built from a datetime, never from input."""
    return "'" + moment.astimezone(UTC).isoformat() + "'"


def create_partition(cursor, table: str, key: str, span: Span, default: str | None) -> int:
    """Create the partition of ``table`` for ``span``, moving into it the rows the DEFAULT partition holds
    for it; return how many moved. The caller holds a transaction.

    The DEFAULT partition is locked first, so no row of the span can land in it between the move and
    the ATTACH (which would refuse to attach). ATTACH, unlike CREATE TABLE ... PARTITION OF, leaves
    the parent open to readers and writers; it briefly locks the tables the foreign keys point to.
    """
    qn = connection.ops.quote_name
    name, names = partition_name(table, span.start), ", ".join(qn(column) for column in columns(cursor, table))
    within = f"{qn(key)} >= {literal(span.start)} AND {qn(key)} < {literal(span.end)}"
    moved = 0
    if default:
        cursor.execute(f"LOCK TABLE {qn(default)} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(
            f"CREATE TEMPORARY TABLE partition_move AS WITH moved AS "  # noqa: S608 (names from the catalog)
            f"(DELETE FROM {qn(default)} WHERE {within} RETURNING {names}) SELECT * FROM moved"
        )
        moved = cursor.rowcount
    cursor.execute(f"CREATE TABLE {qn(name)} (LIKE {qn(table)} INCLUDING CONSTRAINTS)")
    cursor.execute(
        f"ALTER TABLE {qn(table)} ATTACH PARTITION {qn(name)} "
        f"FOR VALUES FROM ({literal(span.start)}) TO ({literal(span.end)})"
    )
    if default:
        cursor.execute(f"INSERT INTO {qn(name)} ({names}) SELECT {names} FROM partition_move")  # noqa: S608
        cursor.execute("DROP TABLE partition_move")
    return moved


# --- The job ---------------------------------------------------------------------------------------


def periods_between(start: datetime, end: datetime, interval: str) -> list[Span]:
    """The periods from the one holding ``start`` to the one holding ``end``."""
    spans = [period(start, interval)]
    while spans[-1].end <= end:
        spans.append(Span(spans[-1].end, period_end(spans[-1].end, interval)))
    return spans


def ensure_partitions(
    now: datetime, *, interval: str | None = None, ahead: int | None = None, since: datetime | None = None
) -> Report:
    """Partitions from this period to ``ahead`` periods on, and for every row the DEFAULT partition caught;
    with ``since``, also every period from then to now (before loading history in bulk).

    Idempotent: each table's work runs under an advisory lock and re-reads the catalog, so two runs
    at once (beat and the command) create each partition once.
    """
    interval = interval or settings.PARTITION_INTERVAL
    ahead = settings.PARTITIONS_AHEAD if ahead is None else ahead
    report = Report()
    if connection.vendor != "postgresql":
        return report
    for model, field_name in PARTITIONED:
        table, key = model._meta.db_table, model._meta.get_field(field_name).column
        with connection.cursor() as cursor:
            if not is_partitioned(cursor, table):
                continue
            _, default = partitions(cursor, table)
            wanted = set(periods_ahead(now, interval, ahead))
            if since is not None:
                wanted |= set(periods_between(since, now, interval))
            if default:
                wanted |= set(_caught_periods(cursor, default, key, interval))
        for span in sorted(wanted):
            _ensure(table, key, span, report)
    if report.moved:
        log.warning("partition_default_rows_moved count=%d into=%s", report.moved, ",".join(report.created))
    return report


def _caught_periods(cursor, default: str, key: str, interval: str) -> list[Span]:
    """The periods of the rows in the DEFAULT partition (kept near empty by this job: a small scan)."""
    qn = connection.ops.quote_name
    cursor.execute(f"SELECT DISTINCT date_trunc('day', {qn(key)}, 'UTC') FROM {qn(default)}")  # noqa: S608
    found = set()
    for (day,) in cursor.fetchall():
        try:
            found.add(period(day, interval))
        except (OverflowError, ValueError):
            # A period ending after year 9999 has no partition bound; the row stays caught, and readable.
            log.warning("partition_out_of_range table=%s day=%s", default, day)
    return sorted(found)


def _ensure(table: str, key: str, span: Span, report: Report) -> None:
    created, moved = [], 0
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"partitions:{table}"])
            covered, default = partitions(cursor, table)
            for gap in uncovered(span, covered):
                moved += create_partition(cursor, table, key, gap, default)
                created.append(partition_name(table, gap.start))
    except DatabaseError as error:
        # The default partition keeps catching the period's rows: nothing is lost, the next run retries.
        log.warning("partition_not_created table=%s start=%s error=%s", table, span.start.isoformat(), error)
        report.failed.append(f"{partition_name(table, span.start)}: {error}".strip())
    else:
        report.created += created
        report.moved += moved
