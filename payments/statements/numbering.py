"""Gapless numbers: a counter row per series and year, locked and raised in the issuing transaction.

Never a database sequence: a sequence hands out a number whether or not the transaction that took
it commits, so a rollback (a crash, a lost race) would leave a hole in the series. Here the number
is taken by an UPDATE of the counter row in the same transaction that inserts the statements: both
commit or neither does, and the row lock makes every other issuer of the series wait its turn, so
no two transactions take the same number. The counter is the only row issuing locks.
"""

from __future__ import annotations

from django.db import transaction

from payments.statements.models import Series, SeriesCounter


class Counter:
    """A series' counter for a year, locked by the current transaction until it ends."""

    def __init__(self, series: Series, year: int) -> None:
        if not transaction.get_connection().in_atomic_block:
            raise RuntimeError("numbers are taken inside the transaction that inserts the statements")
        self.series = series
        self.year = year
        # The first issue of a year creates the row; two first issuers at once: ON CONFLICT DO NOTHING
        # waits for the other's insert to commit, then both lock the one row.
        SeriesCounter.objects.bulk_create([SeriesCounter(series=series, year=year)], ignore_conflicts=True)
        self._row = SeriesCounter.objects.select_for_update().get(series=series, year=year)

    def take(self, count: int) -> list[int]:
        """The next ``count`` numbers of the series, in order; the counter row holds the last one taken."""
        first = self._row.last_number + 1
        self._row.last_number += count
        SeriesCounter.objects.filter(pk=self._row.pk).update(last_number=self._row.last_number)
        return list(range(first, first + count))
