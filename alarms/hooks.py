"""How meters and payments tell alarms that data changed, without importing alarms.

Dependencies point one way (meters <- payments <- alarms), so this is dependency inversion, not a
signal: settings name these functions (``USAGE_CHANGED_HOOK``, ``SETTLEMENT_DONE_HOOK``) and
meters/api.py and payments/runs.py call them through ``import_string``. Both only schedule work:
after the caller's transaction commits, a Celery task evaluates the households in a worker. Neither
can slow or break ingest or settlement: nothing here touches the database, and a broker that is
down costs a log line (the next change, or the periodic job for firing and time-based rules,
evaluates again).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Iterable

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

MAX_BATCH = 500  # ids per task: a flood sends a task every 500 households instead of waiting


def _enqueue(household_ids: list[int], scope: str) -> None:
    from alarms.tasks import evaluate_households  # the task module imports Celery; callers need not

    try:
        evaluate_households.delay(household_ids, scope)
    except Exception:  # kombu raises its own and socket errors alike; none may reach ingest or settlement
        log.exception("alarm_enqueue_failed scope=%s households=%d", scope, len(household_ids))


class UsageBatcher:
    """Household ids whose usage changed in this process, sent as one task at most once a window.

    At 10,000 readings a second, a task per request would be 10,000 tasks a second, nearly all for a
    household that posted once. Instead each process keeps the changed ids (deduplicated) and sends
    them together: the first change of a batch starts a timer of ``ALARM_USAGE_WINDOW_SECONDS``; when
    it fires, the batch goes out as one task. So a process sends at most one task per window (plus one
    per MAX_BATCH ids in a flood), every change is evaluated at most a window after it committed, by a
    task enqueued after it, and a burst of readings is evaluated once, on its end state.
    The timer is a daemon thread; ids still waiting when the process exits are flushed by atexit,
    or at worst wait for the household's next reading.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: set[int] = set()
        self._timer: threading.Timer | None = None

    def add(self, household_ids: Iterable[int]) -> None:
        window = settings.ALARM_USAGE_WINDOW_SECONDS
        with self._lock:
            self._pending.update(household_ids)
            if window > 0 and len(self._pending) < MAX_BATCH:
                if self._timer is None:
                    self._timer = threading.Timer(window, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
                return
            batch = self._take()
        if window > 0:
            # A full batch leaves from a thread of its own: a slow broker never holds up the request.
            threading.Thread(target=self._send, args=(batch,), daemon=True).start()
        else:  # no batching (development): sent from the request's after-commit callback
            self._send(batch)

    def flush(self) -> None:
        with self._lock:
            batch = self._take()
        self._send(batch)

    def _take(self) -> list[int]:
        """Empty the batch and stop its timer; the caller holds the lock."""
        if self._timer is not None:
            self._timer.cancel()  # a no-op when the timer itself is calling flush
            self._timer = None
        batch, self._pending = sorted(self._pending), set()
        return batch

    def _send(self, batch: list[int]) -> None:
        if batch:
            _enqueue(batch, "usage")


usage_batcher = UsageBatcher()
atexit.register(usage_batcher.flush)


def usage_changed(household_ids: Iterable[int]) -> None:
    """meters: hourly usage of these households changed (called inside the ingest transaction)."""
    ids = list(household_ids)
    # robust: an exception in the callback is logged by Django, never raised into the committed request.
    transaction.on_commit(lambda: usage_batcher.add(ids), robust=True)


def settled(household_ids: Iterable[int]) -> None:
    """payments: a chunk of households was settled (balances moved, payments may have failed): one task."""
    ids = list(household_ids)
    transaction.on_commit(lambda: _enqueue(ids, "settlement"), robust=True)
