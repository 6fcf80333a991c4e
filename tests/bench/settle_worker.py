"""The settlement figure's worker: a fresh process that settles the households it is given and reports its memory.

``tests/bench/settlement.py`` starts it as ``python -m tests.bench.settle_worker`` with the bench
environment and a JSON job on stdin: ``{"warmup_ids": [...], "ids": [...], "period_end": ISO}``.
It does what a Celery worker does before and during ``payments.tasks.settle_chunk``: sets Django up,
imports the tasks and everything they use, connects to PostgreSQL; then it settles ``warmup_ids``
(first-use costs: prepared caches, the ledger's first block) and, timed, ``ids`` in one
``runs.settle_households`` call. Its memory is read at each step (RSS, PSS, USS), the peak from VmHWM.
The last line of stdout is ``RESULT {json}``.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime

from tests.bench import procmem

MARKER = "RESULT "


def main() -> int:
    job = json.loads(sys.stdin.read())
    memory = {"started": procmem.snapshot()}

    import django

    django.setup()
    from django.db import connection

    import payments.tasks  # noqa: F401 (what a worker imports: the tasks and everything they use)
    from tests.bench.settlement import _Clock, _log_to_file, _settle

    connection.ensure_connection()
    memory["idle"] = procmem.snapshot()
    period_end = datetime.fromisoformat(job["period_end"])
    with _log_to_file():
        warmup = _settle(job["warmup_ids"], period_end)
    memory["after_warmup"] = procmem.snapshot()

    ids = job["ids"]
    with _log_to_file(), _Clock() as clock:
        began = time.monotonic()  # the same clock as the parent's sampler
        tally = _settle(ids, period_end)
        ended = time.monotonic()
    memory["after_run"] = procmem.snapshot()
    result = {
        "warmup_tally": dict(warmup),
        "tally": dict(tally),
        "seconds": clock.wall,
        "cpu_seconds": clock.cpu,
        "backend_cpu_seconds": clock.backend_cpu,
        "per_household_ms": clock.per_household(len(ids)),
        "describe": clock.describe(len(ids)),
        "monotonic": [began, ended],
        "memory": memory,
    }
    print(MARKER + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
