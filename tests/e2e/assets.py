"""Files the browser tests need that the repository does not carry."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
CHART_JS = CACHE / "chart.umd.min.js"
SETTINGS = Path(__file__).parents[2] / "energypay" / "settings.py"


def chart_js_version() -> str:
    # Read from settings.py's text so this runs before Django is set up (from the Makefile).
    return re.search(r"chart\.js@([0-9.]+)/", SETTINGS.read_text()).group(1)


def fetch_chart_js() -> Path | None:
    """The pinned Chart.js file from the npm registry (same bytes as the CDN serves), cached."""
    if CHART_JS.exists():
        return CHART_JS
    if not shutil.which("npm"):
        return None
    version = chart_js_version()
    CACHE.mkdir(exist_ok=True)
    packed = subprocess.run(
        ["npm", "pack", f"chart.js@{version}", "--silent", "--pack-destination", str(CACHE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if packed.returncode != 0:
        return None
    tarball = CACHE / packed.stdout.strip().splitlines()[-1]
    subprocess.run(
        ["tar", "-xzf", str(tarball), "-C", str(CACHE), "--strip-components=2", "package/dist/chart.umd.min.js"],
        check=True,
        timeout=60,
    )
    tarball.unlink()
    return CHART_JS
