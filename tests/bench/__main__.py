"""``make bench``: run every benchmark against gunicorn and PostgreSQL on this machine, print one table.

Each benchmark is a module with ``add_arguments(parser)`` and ``run(options) -> (rows, data)``; its
data goes to ``var/bench/<name>.json``. All of them share one fresh database, ``energypay_bench``,
dropped at the end unless ``--keep-db``. A run of all of them also writes the table, the machine
and the notes into the generated section of ``docs/benchmarks.md`` (``--no-docs`` to leave it).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.bench import dashboard, harness, ingest, onboarding, scale, settlement, statements, web_memory
from tests.bench.report import print_table, write_json, write_markdown

BENCHMARKS = {
    "ingest": ingest,
    "settlement": settlement,
    "statements": statements,
    "dashboard": dashboard,
    "memory": web_memory,
    "onboarding": onboarding,
}
# Run only when named or with --scale: 10 million readings take minutes to generate.
EXTRA = {"scale": scale}
DOCS = harness.ROOT / "docs" / "benchmarks.md"
BUSY = 0.1  # share of the CPU other processes may use before the figures deserve a warning


def parse_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names",
        nargs="*",
        metavar="name",
        help=f"benchmarks to run: {', '.join(BENCHMARKS | EXTRA)} (default all but {', '.join(EXTRA)})",
    )
    parser.add_argument(
        "--seconds", type=float, default=12, help="measured seconds per figure, over all rounds (default 12)"
    )
    parser.add_argument("--rounds", type=int, default=6, help="alternate figure and ceiling this often (default 6)")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds before each (default 3)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", default="sync", help="gunicorn worker class (default sync)")
    parser.add_argument("--profile", action="store_true", help="also cProfile the code paths in-process")
    parser.add_argument("--keep-db", action="store_true", help=f"keep the {harness.DB_NAME} database")
    parser.add_argument(
        "--no-docs", action="store_true", help="do not write docs/benchmarks.md (a partial run never does)"
    )
    for module in (BENCHMARKS | EXTRA).values():
        module.add_arguments(parser)
    options = parser.parse_args(argv)
    unknown = set(options.names) - set(BENCHMARKS | EXTRA)
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS | EXTRA)}")
    return options


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    names = options.names or list(BENCHMARKS)
    if options.scale and "scale" not in names:
        names.append("scale")
    began = time.monotonic()
    harness.ensure_wrk()
    load_average = os.getloadavg()
    busy_before = harness.busy_cpu()
    load = {"load_average": [round(value, 2) for value in load_average], "busy_cpu": round(busy_before, 3)}
    if busy_before > BUSY:
        print(f"Note: other processes keep {busy_before:.0%} of the CPU busy; the figures will be noisy.", flush=True)
    print(f"Creating and migrating the {harness.DB_NAME} database ...", flush=True)
    harness.setup_django()
    machine = harness.machine()
    rows, notes = [], []
    try:
        for name in names:
            print(f"Benchmark {name}:", flush=True)
            started_at = datetime.now(UTC)
            module_rows, data = (BENCHMARKS | EXTRA)[name].run(options)
            rows += module_rows
            notes += data.get("notes", [])
            write_json(
                harness.OUTPUT_DIR / f"{name}.json",
                {
                    "benchmark": name,
                    "started_at": started_at.isoformat(),
                    "machine": machine,
                    "busy_cpu_before_run": load["busy_cpu"],
                    "load_average_before_run": load["load_average"],
                    "load_average_1min_after": os.getloadavg()[0],
                    **data,
                },
            )
    finally:
        if not options.keep_db:
            harness.drop_database()
    if busy_before > BUSY:
        notes.append(f"Other processes kept {busy_before:.0%} of the CPU busy just before the run.")
    print_table(rows, machine, notes, load)
    seconds = time.monotonic() - began
    where = f"{_shown(harness.OUTPUT_DIR)}/"
    if set(BENCHMARKS) <= set(names) and not options.no_docs:
        command = "make bench" + (f" BENCH_ARGS='{' '.join(argv)}'" if argv else "")
        notes.append(f"The whole run took {seconds / 60:.1f} minutes; raw figures in {where}*.json.")
        write_markdown(DOCS, rows, machine, notes, load, when=datetime.now(UTC), command=command)
        where += f" and {DOCS.relative_to(harness.ROOT)}"
    print(f"Ran in {seconds:.0f} s; results in {where}")
    return 0


def _shown(path: Path) -> Path:
    """The path from the project's root when it is inside it."""
    return path.relative_to(harness.ROOT) if path.is_relative_to(harness.ROOT) else path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
