"""Every benchmark of `make bench` runs to its table, at a tiny size (tests/bench itself is not collected).

The benchmarks are code that only `make bench` ran, and three of them broke unseen for days: two
called a constructor whose arguments had changed, one inserted rows without a column made NOT NULL
since. Here each runs end to end on PostgreSQL with a handful of households and a second or so a
figure, in a database, a Redis database and an output directory of its own. At this size the figures
mean nothing and may miss their goals; what is asserted is that every benchmark printed its rows
and that its own checks (each household paid once, statements numbered without a gap, ...) passed,
which a failed check turns into an exit status. The scale benchmark's 10 million readings are too
many for a test; its code shares the ingest and dashboard measurements run here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.bench.__main__ import BENCHMARKS  # what `make bench` runs by default: all but scale
from tests.bench.harness import ROOT

FIGURES = (
    "ingest: single-reading POSTs",
    "ingest: readings in 1,000-reading batches",
    "settlement: households/s, 1 worker",
    "settlement: households/s, 2 workers",
    "memory: settlement worker",
    "statements: issued/s",
    "dashboard: chart partial, a year of history",
    "dashboard: full page, a year vs a week of history",
    "memory: web worker",
    "onboarding:",
)

pytestmark = [
    pytest.mark.skipif(
        not os.environ.get("DATABASE_URL", "").startswith("postgres"), reason="the benchmarks run on PostgreSQL"
    ),
    pytest.mark.timeout(900),
]


def test_every_benchmark_runs_to_its_table(tmp_path):
    environment = {
        **os.environ,
        "BENCH_DB_NAME": f"energypay_bench_test_{uuid.uuid4().hex[:8]}",
        "BENCH_CACHE_URL": "redis://127.0.0.1:6379/13",
        "CELERY_BROKER_URL": "memory://",
        "BENCH_OUTPUT_DIR": str(tmp_path),
    }
    tiny = [
        *("--seconds", "2", "--rounds", "1", "--warmup", "0.5", "--ingest-connections", "2"),
        *("--ingest-processes", "1", "--households", "2000", "--statement-households", "20"),
        *("--statement-days", "2", "--dashboard-requests", "20", "--memory-seconds", "0.5"),
        *("--onboarding-rows", "20", "--no-docs"),
    ]
    run = subprocess.run(
        [sys.executable, "-m", "tests.bench", *tiny],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=840,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    missing = [figure for figure in FIGURES if figure not in run.stdout]
    assert not missing, f"no row for {missing}:\n{run.stdout[-4000:]}"
    written = sorted(path.stem for path in tmp_path.glob("*.json"))
    assert written == sorted(BENCHMARKS), written
