"""Functions that settings name for apps above this one (alarms, ops): meters and payments call them
without importing those apps (dependencies point one way, docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from django.utils.module_loading import import_string


@cache
def load_hook(path: str) -> Callable:
    """The function at dotted ``path``, imported once per process."""
    return import_string(path)
