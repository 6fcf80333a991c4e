"""A hung test fails after the configured timeout instead of holding the run (pytest-timeout, pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_test_has_a_default_timeout(request):
    assert request.config.getini("timeout") == "120"
    assert request.config.getini("timeout_method") == "signal"


@pytest.mark.timeout(60)
def test_a_test_that_hangs_fails_with_a_timeout_and_the_run_goes_on(tmp_path):
    (tmp_path / "test_hang.py").write_text(
        "import time\n\ndef test_hangs():\n    time.sleep(600)\n\ndef test_after():\n    assert True\n"
    )
    # The project's own configuration, with a short timeout so that this takes seconds.
    config = ["-c", str(ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), "-p", "no:django", "-o", "timeout=2"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *config, "-q", str(tmp_path / "test_hang.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 1, result.stdout[-2000:]
    assert "Timeout (>2.0s)" in result.stdout
    assert "1 failed, 1 passed" in result.stdout
