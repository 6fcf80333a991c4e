"""Fixtures the meters tests share."""

from __future__ import annotations

import pytest
from django.db import connection

# The fast path is PostgreSQL's (meters/fastpath.py); SQLite always runs the Python path.
INGEST_PATHS = ["fast", "python"] if connection.vendor == "postgresql" else ["python"]


@pytest.fixture(params=INGEST_PATHS)
def ingest_path(request, settings) -> str:
    """Run the test once per ingest path: the contract is the same whichever answers a request.

    "fast" is the default (a single in-order reading in one statement, everything else in Python);
    "python" turns the fast path off, so every request takes the path SQLite takes.
    """
    settings.INGEST_FAST_PATH = request.param == "fast"
    return request.param
