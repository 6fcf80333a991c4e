"""Functions that settings name for apps above this one (alarms, ops): meters and payments call them
without importing those apps (dependencies point one way, docs/architecture.md)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


@cache
def load_hook(path: str) -> Callable:
    """The function at dotted ``path``, imported once per process."""
    return import_string(path)


def usage_changed(household_id: int) -> None:
    """Tell settings.USAGE_CHANGED_HOOK (alarms, which meters must not import) that a household's usage changed.

    The hook only schedules work for after the commit; whatever it raises is logged, never passed on:
    a reading is stored whether or not alarms hear of it at once (they also re-check on a timer).
    """
    if path := getattr(settings, "USAGE_CHANGED_HOOK", ""):
        try:
            load_hook(path)([household_id])
        except Exception:
            log.exception("usage_changed_hook_failed household=%s", household_id)
