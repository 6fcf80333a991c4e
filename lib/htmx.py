"""Page or partial: one rule for every view that answers htmx with a part of its page (``partial_requested``).

A view whose body depends on these headers says so with ``@vary_on_headers(*VARY)``, so a cache (the
browser's back button included) never serves the partial as the page or the other way round.
"""

from __future__ import annotations

from django.http import HttpRequest

# What htmx sends that picks the body: whether it asks at all, for which element, and the two cases
# in which it asks yet needs the whole page (a boosted link, a history restore after a cache miss).
VARY = ("HX-Request", "HX-Target", "HX-Boosted", "HX-History-Restore-Request")


def partial_requested(request: HttpRequest, target: str | None = None) -> bool:
    """htmx asks to swap a part of the page (the element ``target``, when given) rather than load the page."""
    htmx = getattr(request, "htmx", None)
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return False
    return target is None or htmx.target == target
