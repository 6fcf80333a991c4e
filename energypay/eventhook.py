"""settings.EVENT_HOOK: every event a lower floor emits goes to each top-floor listener, in the change's transaction.

``meters.hooks.emit`` calls ``record``; the webhooks outbox (for subscribed endpoints) and the
household's notifications both write their rows in that transaction, so both commit with the change
or roll back with it. The periodic detectors (energypay/webhooks/detectors.py) call it too.
"""

from __future__ import annotations

from collections.abc import Iterable

from energypay.notifications import inbox
from energypay.webhooks import outbox


def record(items: Iterable[tuple[str, int | None, dict]]) -> int:
    """Hand ``(type, household id, data)`` events to webhooks and notifications; returns the webhook count."""
    items = list(items)
    stored = outbox.record(items)
    inbox.record(items)
    return stored
