"""Functions that settings name for apps above this one (alarms, ops, webhooks): meters, payments and
alarms call them without importing those apps (dependencies point one way, docs/architecture.md)."""

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


Event = tuple[str, int | None, dict]  # (type such as "settlement.confirmed", household id or None, data)


def emit(event_type: str, household_id: int | None, data: dict) -> None:
    """Tell settings.EVENT_HOOK (webhooks, on the top floor) that something happened; see ``emit_many``."""
    emit_many([(event_type, household_id, data)])


def emit_many(events: list[Event]) -> None:
    """Tell settings.EVENT_HOOK what happened, inside the transaction that made it happen.

    The hook writes its outbox rows in the caller's transaction: they commit with the change or roll
    back with it, so an event is never lost and never sent for a change that did not happen. Unlike
    the hooks above, whatever it raises is passed on: a failed outbox write fails the change (a
    database in trouble fails both alike; the caller's own retry makes the change, and the event,
    again). ``data`` holds codes, ids, amounts as decimal strings and instants in ISO 8601 UTC.
    """
    if events and (path := getattr(settings, "EVENT_HOOK", "")):
        load_hook(path)(events)
