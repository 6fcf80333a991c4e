"""The repository explains itself: code, docs and README point into docs/, never to files outside it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# A Markdown link's target: [text](target) or [text](target "title").
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# Design notes that live beside a checkout on some machines but are not part of the repository.
OUTSIDE = re.compile(r"\.\./shared/|\bshared/(?:DESIGN|STYLE|BSV_NOTES)\.md")


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()


def test_every_link_in_the_readme_and_docs_opens_a_file_of_the_repository():
    tracked = set(tracked_files())
    documents = [name for name in tracked if name == "README.md" or (name.startswith("docs/") and name.endswith(".md"))]
    broken = []
    for name in documents:
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            for target in LINK.findall(line):
                if target.startswith(("http://", "https://", "mailto:", "#")):
                    continue  # the web, or a heading of the same document
                path = (Path(name).parent / target.split("#", 1)[0]).as_posix()
                resolved = Path(os.path.normpath(path)).as_posix()
                if resolved not in tracked and not any(file.startswith(resolved + "/") for file in tracked):
                    broken.append(f"{name}:{number}: {target}")
    assert "README.md" in documents
    assert not broken, "Links to files the repository does not have:\n" + "\n".join(broken)


def test_nothing_in_the_repository_points_outside_it():
    tracked = " ".join(tracked_files())
    pointing = []
    for name in tracked.split():
        path = ROOT / name
        if name == "tests/test_docs_in_repo.py" or not path.is_file() or path.suffix in {".png", ".js", ".svg"}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                pointing.append(f"{name}:{number}: {line.strip()[:100]}")
    assert not pointing, "Point into docs/ instead:\n" + "\n".join(pointing)
