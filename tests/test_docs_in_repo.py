"""The repository explains itself: code, docs and README point into docs/, never to files outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Design notes that live beside a checkout on some machines but are not part of the repository.
OUTSIDE = re.compile(r"\.\./shared/|\bshared/(?:DESIGN|STYLE|BSV_NOTES)\.md")


def test_nothing_in_the_repository_points_outside_it():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    pointing = []
    for name in tracked.split():
        path = ROOT / name
        if name == "tests/test_docs_in_repo.py" or not path.is_file() or path.suffix in {".png", ".js", ".svg"}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                pointing.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not pointing, "Point into docs/ instead:\n" + "\n".join(pointing)
