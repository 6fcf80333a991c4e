"""Files the browser tests need that the repository does not carry, fetched pinned from the npm registry."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

CACHE = Path(__file__).parent / ".cache"
CHART_JS = CACHE / "chart.umd.min.js"
SETTINGS = Path(__file__).parents[2] / "energypay" / "settings.py"
# axe-core, the accessibility engine the browser tests run in each page (test_accessibility.py). To move
# to a newer version, change both lines: the digest is of package/axe.min.js in that version's tarball.
AXE_CORE_VERSION = "4.14.1"
AXE_CORE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
AXE_CORE = CACHE / f"axe-{AXE_CORE_VERSION}.min.js"


def chart_js_version() -> str:
    # Read from settings.py's text so this runs before Django is set up (from the Makefile).
    return re.search(r"chart\.js@([0-9.]+)/", SETTINGS.read_text()).group(1)


def fetch_chart_js() -> Path | None:
    """The pinned Chart.js file (same bytes as the CDN serves; the page's integrity hash checks them), cached."""
    return _fetch_from_npm(f"chart.js@{chart_js_version()}", "package/dist/chart.umd.min.js", CHART_JS)


def fetch_axe_core() -> Path | None:
    """The pinned axe-core engine, cached; None without npm. A file that is not the pinned one is refused."""
    path = _fetch_from_npm(f"axe-core@{AXE_CORE_VERSION}", "package/axe.min.js", AXE_CORE)
    if path is not None and hashlib.sha256(path.read_bytes()).hexdigest() != AXE_CORE_SHA256:
        path.unlink()
        raise RuntimeError(f"axe-core {AXE_CORE_VERSION} from npm is not the file pinned in {__file__}")
    return path


def _fetch_from_npm(package: str, member: str, target: Path) -> Path | None:
    """One file of an npm package's tarball (``npm pack`` checks the registry's integrity hash)."""
    if target.exists():
        return target
    if not shutil.which("npm"):
        return None
    CACHE.mkdir(exist_ok=True)
    packed = subprocess.run(
        ["npm", "pack", package, "--silent", "--pack-destination", str(CACHE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if packed.returncode != 0:
        return None
    tarball = CACHE / packed.stdout.strip().splitlines()[-1]
    try:
        extracted = subprocess.run(
            ["tar", "-xzOf", str(tarball), member], capture_output=True, timeout=60, check=True
        ).stdout
    finally:
        tarball.unlink()
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(extracted)
    partial.replace(target)  # never a half-written file left for the next run to trust
    return target
