"""What operators need to see that no other table records: beat's last tick, rejected readings by reason.

Both tables stay small by construction: one row per beat job, one row per (hour, reason).
"""

from __future__ import annotations

from datetime import datetime

from django.db import IntegrityError, connection, models, transaction


class Heartbeat(models.Model):
    """The last time a periodic job ran, one row per job, overwritten in place.

    It lives in the database, not the cache: with the default setup (SQLite, file broker, an
    in-process cache) the web process could not see a tick the worker stored in its own memory.
    """

    name = models.CharField(max_length=100, primary_key=True)
    last_tick = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.last_tick:%Y-%m-%d %H:%M:%S} UTC"

    @classmethod
    def beat(cls, name: str, now: datetime) -> None:
        """Record a tick: one UPDATE, or an INSERT the first time (a concurrent first tick is harmless)."""
        if cls.objects.filter(name=name).update(last_tick=now):
            return
        try:
            with transaction.atomic():
                cls.objects.create(name=name, last_tick=now)
        except IntegrityError:
            cls.objects.filter(name=name, last_tick__lt=now).update(last_tick=now)


class RejectionCount(models.Model):
    """How many readings ingest rejected for one reason within one UTC hour."""

    hour_start = models.DateTimeField()
    reason = models.CharField(max_length=30)
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-hour_start", "reason"]
        # Also the index the status page's "since <hour>" sums read.
        constraints = [models.UniqueConstraint(fields=["hour_start", "reason"], name="rejection_count_unique_hour")]

    def __str__(self) -> str:
        return f"{self.hour_start:%Y-%m-%d %H:00} UTC {self.reason}: {self.count}"

    @classmethod
    def add(cls, hour_start: datetime, counts: dict[str, int]) -> None:
        """Add ``counts`` (reason -> n) to the hour's rows in one statement.

        INSERT ... ON CONFLICT DO UPDATE adds in the database, so concurrent requests never lose a
        count; PostgreSQL and SQLite (3.24+) both speak it, which the ORM's bulk_create cannot (its
        update_conflicts overwrites the count instead of adding to it).
        """
        if not counts:
            return
        table = connection.ops.quote_name(cls._meta.db_table)
        rows = ", ".join(["(%s, %s, %s)"] * len(counts))
        hour = connection.ops.adapt_datetimefield_value(hour_start)  # SQLite: the text the ORM stores
        params: list[object] = []
        for reason, count in sorted(counts.items()):  # a fixed order: two requests never deadlock
            params += [hour, reason, count]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (hour_start, reason, count) VALUES {rows} "  # noqa: S608 (no user input)
                f"ON CONFLICT (hour_start, reason) DO UPDATE SET count = {table}.count + excluded.count",
                params,
            )
