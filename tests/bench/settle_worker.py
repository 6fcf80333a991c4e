"""A settlement worker for the benchmark: a process that settles the chunks it is given, as a Celery worker would.

``tests/bench/settlement.py`` starts one or two of these (``python -m tests.bench.settle_worker``)
with the bench environment. Each does what a Celery worker does before its first
``payments.tasks.settle_chunk``: sets Django up, imports the tasks and everything they use, connects
to PostgreSQL. Then it reads jobs, one JSON line each, from stdin:

- ``{"job": "warmup", "chunks": [[ids], ...], "period_end": ISO}``: settle them untimed (first-use
  costs: prepared caches, the ledger's first block);
- ``{"job": "settle", "period_end": ...}``: answer ``ARMED``, wait for a ``go`` line (so that two
  workers start together), then, timed, ask for a chunk (``NEXT``), settle it with
  ``runs.settle_households(chunk)`` as ``settle_chunk`` does per task, and ask again until the answer
  is ``done``: the parent deals the chunks out as a broker's queue does to workers that take one
  task at a time (``CELERY_WORKER_PREFETCH_MULTIPLIER = 1``);
- ``{"job": "quit"}``.

Each job is answered with one line ``RESULT {json}``: the tally, the time (wall, this process's
CPU, its PostgreSQL backend's CPU), ``time.monotonic()`` at start and end (one clock for every
process of the machine, so the parent can tell when the last of two workers finished), and the
process's memory at that point (RSS, PSS, USS; the peak from VmHWM).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from datetime import datetime

from tests.bench import procmem

MARKER = "RESULT "
ARMED = "ARMED"
NEXT = "NEXT"
DONE = "done"


def main() -> int:
    memory = {"started": procmem.snapshot()}

    import django

    django.setup()
    from django.db import connection

    import payments.tasks  # noqa: F401 (what a worker imports: the tasks and everything they use)
    from tests.bench.settlement import _Clock, _log_to_file, _settle

    connection.ensure_connection()
    memory["idle"] = procmem.snapshot()
    _answer({"memory": memory})
    for line in sys.stdin:
        job = json.loads(line)
        if job["job"] == "quit":
            break
        period_end = datetime.fromisoformat(job["period_end"])
        if job["job"] == "settle":
            print(ARMED, flush=True)
            if sys.stdin.readline().strip() != "go":
                return 1
        tally: Counter = Counter()
        households = 0
        with _log_to_file(), _Clock() as clock:
            began = time.monotonic()
            for chunk in _chunks(job):
                tally.update(_settle(chunk, period_end))
                households += len(chunk)
            ended = time.monotonic()
        _answer(
            {
                "tally": dict(tally),
                "households": households,
                "seconds": clock.wall,
                "cpu_seconds": clock.cpu,
                "backend_cpu_seconds": clock.backend_cpu,
                "per_household_ms": clock.per_household(households),
                "monotonic": [began, ended],
                "memory": procmem.snapshot(),
            }
        )
    return 0


def _chunks(job: dict):
    """A warm-up's chunks, or the parent's answers to NEXT until it says done."""
    if job["job"] == "warmup":
        yield from job["chunks"]
        return
    while True:
        print(NEXT, flush=True)
        line = sys.stdin.readline().strip()
        if line in (DONE, ""):
            return
        yield json.loads(line)


def _answer(result: dict) -> None:
    print(MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
