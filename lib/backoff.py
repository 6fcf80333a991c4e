"""One retry schedule for everything that tries again later (alarm mails, broadcasts): doubling, with a cap."""

from __future__ import annotations

from datetime import timedelta


def schedule(tries: int, *, first: timedelta, cap: timedelta) -> timedelta:
    """The wait after ``tries`` earlier waits: ``first``, then twice as long each time, never more than ``cap``.

    schedule(0) == first, schedule(1) == 2 * first, ...; the cap means a long outage is asked about
    less and less often, yet at least once per ``cap`` once it is over. Never giving up is the
    caller's choice: the schedule has no end.
    """
    wait = first
    for _ in range(tries):
        if wait >= cap:
            break  # doubling on would only overflow
        wait *= 2
    return min(wait, cap)
