"""A process's memory as Linux reports it: RSS and peak from /proc/<pid>/status, PSS and USS from smaps_rollup.

RSS counts every resident page, shared ones too (libraries, pages a forked worker still shares with
its master); PSS splits shared pages between the processes sharing them; USS is what the process
alone holds, what stopping it would give back. Values are MB (2**20 bytes). Where /proc is not
readable (another OS, a process of another user) the readers return ``None`` and the report says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

MB = 1024  # /proc reports kB


def status(pid: int | str = "self") -> dict | None:
    """``{"rss": MB, "peak_rss": MB}`` from /proc/<pid>/status (VmRSS, VmHWM), or None."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = _kb_fields(text)
    if "VmRSS" not in fields:
        return None  # a zombie: no memory left to report
    return {"rss": fields["VmRSS"] / MB, "peak_rss": fields.get("VmHWM", fields["VmRSS"]) / MB}


def rollup(pid: int | str = "self") -> dict | None:
    """``{"rss", "pss", "uss"}`` in MB from /proc/<pid>/smaps_rollup (Linux 4.14+), or None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = _kb_fields(text)
    if "Pss" not in fields:
        return None
    return {
        "rss": fields.get("Rss", 0) / MB,
        "pss": fields["Pss"] / MB,
        "uss": (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / MB,
    }


def snapshot(pid: int | str = "self") -> dict | None:
    """status() and rollup() together: rss, peak_rss, and pss/uss when readable."""
    found = status(pid)
    if found is None:
        return None
    shares = rollup(pid) or {}
    return {**found, "pss": shares.get("pss"), "uss": shares.get("uss")}


def _kb_fields(text: str) -> dict[str, int]:
    fields = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name.strip()] = int(parts[0])
    return fields


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (gunicorn's workers), from /proc/<pid>/task/*/children."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(child) for child in (task / "children").read_text().split()]
    return sorted(set(found))


def bare_django(environment: dict[str, str], cwd: Path) -> dict | None:
    """A fresh ``python -c "import django; django.setup()"`` on the same settings: the floor of any process."""
    code = "import django, json; django.setup(); from tests.bench import procmem; print(json.dumps(procmem.snapshot()))"
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"bare django.setup() failed:\n{run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


class Sampler:
    """Samples a process's RSS every ``interval`` seconds in a thread: (time.monotonic(), MB) pairs.

    The sampler reads another process's /proc entry, so it costs the measured process nothing.
    """

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            found = status(self.pid)
            if found is None:
                return
            self.samples.append((time.monotonic(), found["rss"]))
            self._stop.wait(self.interval)

    def between(self, began: float, ended: float) -> list[tuple[float, float]]:
        return [(at, rss) for at, rss in self.samples if began <= at <= ended]

    def at_share(self, began: float, ended: float, share: float) -> float | None:
        """The RSS sampled nearest to ``share`` (0..1) of the way from ``began`` to ``ended``."""
        inside = self.between(began, ended)
        if not inside:
            return None
        target = began + share * (ended - began)
        return min(inside, key=lambda sample: abs(sample[0] - target))[1]


def describe(found: dict | None) -> str:
    """``"112 MB RSS (PSS 105, USS 98)"``, or what could not be read."""
    if found is None:
        return "unreadable"
    text = f"{found['rss']:.0f} MB RSS"
    if found.get("pss") is not None:
        text += f" (PSS {found['pss']:.0f}, USS {found['uss']:.0f})"
    return text
