"""Running calls in threads released at the same moment, for the tests of row locks (PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


def at_once(*calls: Callable[[], T]) -> tuple[list[T], list[Exception]]:
    """Run each call in its own thread, all started together behind a barrier.

    Returns what the calls returned (in the order they finished) and what they raised: a thread's
    exception would otherwise vanish. Each thread closes its own database connections.
    """
    barrier = threading.Barrier(len(calls))
    results: list[T] = []
    errors: list[Exception] = []

    def run(call: Callable[[], T]) -> None:
        try:
            barrier.wait()
            results.append(call())
        except Exception as error:  # surfaced to the caller
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors
