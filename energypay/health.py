"""``GET /healthz``: is this deployment working? JSON for load balancers and monitoring.

200 with ``"status": "ok"`` when every check passes, 503 with ``"status": "fail"`` otherwise.
Anonymous, so it says what failed and never how: no hosts, URLs, keys or exception messages
(those go to the log). Every check is bounded in time:

- database: ``SELECT 1``; the checks after it that read the database are skipped when it fails;
- broker: one connection attempt with a short timeout (the file broker: its folder is writable);
- beat: the heartbeat job's last tick (energypay/tasks.py), older than HEALTH_BEAT_MAX_AGE fails;
  since a worker runs that job from beat's schedule, this proves beat, broker and worker together;
- price: the newest quote as settlement judges it (payments/figures.py): older than PRICE_MAX_AGE
  fails (settlement would defer); one stamped in the future comes from a wrong clock and is not
  taken, here as there;
- bsv_network: a cheap question to the network, answered from a per-process memo for
  HEALTH_CACHE_SECONDS so a load balancer polling every second cannot hammer WhatsOnChain;
- settlement_backlog: settlements still ``signed`` after HEALTH_SIGNED_MAX_AGE fail (the sweeper
  should have sent them); households in arrears are counted for information (an empty wallet
  is a household's problem, not the system's) and memoized like the network.

On PostgreSQL each query runs under a statement timeout (HEALTH_TIMEOUT_SECONDS); a check that
times out fails with ``"error": "QueryCanceled"``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from energypay.ops.models import Heartbeat
from energypay.tasks import HEARTBEAT
from meters.models import HourlyUsage
from payments import figures
from payments.models import Settlement
from payments.networks import get_network

log = logging.getLogger(__name__)

Check = dict[str, Any]
UNAVAILABLE: Check = {"ok": False, "error": "database unavailable"}


# --- Bounds -------------------------------------------------------------------------------------


@contextmanager
def time_limited(seconds: float) -> Iterator[None]:
    """Run the queries inside under a PostgreSQL statement timeout of ``seconds``.

    SQLite has none and needs none: a local file, read beside the writer thanks to WAL. (An
    atomic block there would even take the write lock: transaction_mode is IMMEDIATE.)
    """
    if connection.vendor != "postgresql":
        yield
        return
    nested = connection.in_atomic_block
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('statement_timeout'), set_config('statement_timeout', %s, true)",
            [str(max(1, int(seconds * 1000)))],
        )
        previous = cursor.fetchone()[0]
        yield
        if nested:  # (reached only without an error) the caller's transaction goes on: give its timeout back
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [previous])


class Memo:
    """A value remembered for ``seconds`` in this process; one caller computes it at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str, seconds: float, compute: Callable[[], Any]) -> Any:
        with self._lock:
            stored = self._values.get(key)
            if stored and time.monotonic() - stored[0] < seconds:
                return stored[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


memo = Memo()


def _failed(name: str, error: Exception) -> Check:
    # The log gets the whole story; the anonymous answer gets the kind of failure only.
    cause = error.__cause__ if isinstance(error, DatabaseError) and error.__cause__ else error
    log.warning("health_check_failed check=%s error=%s detail=%s", name, type(cause).__name__, error)
    return {"ok": False, "error": type(cause).__name__}


def _age(moment: datetime | None, now: datetime) -> int | None:
    # A clock a little ahead on another machine must not make an age negative.
    return None if moment is None else max(0, int((now - moment).total_seconds()))


# --- The checks ---------------------------------------------------------------------------------


def check_database() -> Check:
    started = time.monotonic()
    try:
        with time_limited(settings.HEALTH_TIMEOUT_SECONDS), connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as error:
        return _failed("database", error)
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def check_broker() -> Check:
    from energypay.celery import app  # the configured app, with the broker the workers use

    timeout = settings.HEALTH_TIMEOUT_SECONDS
    started = time.monotonic()
    try:
        with app.connection_for_write(
            connect_timeout=timeout, transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout}
        ) as conn:
            conn.ensure_connection(max_retries=0, timeout=timeout)  # one attempt, no back-off sleeps
            transport = conn.transport_cls
            folder = conn.transport_options.get("data_folder_in")
            if transport == "filesystem" and not (folder and os.access(folder, os.W_OK)):
                raise PermissionError("the file broker's queue folder is missing or read-only")
    except Exception as error:  # whatever the transport raises, the answer is "not reachable"
        return _failed("broker", error)
    return {"ok": True, "transport": transport, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def check_beat(now: datetime) -> Check:
    try:
        with time_limited(settings.HEALTH_TIMEOUT_SECONDS):
            last = Heartbeat.objects.filter(name=HEARTBEAT).values_list("last_tick", flat=True).first()
    except DatabaseError as error:
        return _failed("beat", error)
    age = _age(last, now)
    return {
        "last_tick": last.isoformat() if last else None,
        "age_seconds": age,
        "ok": age is not None and age <= settings.HEALTH_BEAT_MAX_AGE,
    }


def check_price(now: datetime) -> Check:
    try:
        with time_limited(settings.HEALTH_TIMEOUT_SECONDS):
            quote = figures.newest_quote(now)
    except DatabaseError as error:
        return _failed("price", error)
    return {
        "fetched_at": quote.fetched_at.isoformat() if quote else None,
        "age_seconds": _age(quote.fetched_at if quote else None, now),
        # What settlement asks: a quote stamped in the future (a wrong clock) is not one.
        "ok": quote is not None and figures.is_fresh(quote, now),
    }


def _ask_network() -> Check:
    try:
        network = get_network()
        name = network.name
        reachable, detail = network.reachable()
    except Exception as error:  # a misconfigured network must show here, not as a 500
        failed = _failed("bsv_network", error)
        return {"name": settings.BSV_NETWORK, "reachable": False, "detail": failed["error"], "ok": False}
    return {"name": name, "reachable": reachable, "detail": detail, "ok": reachable}


def check_network() -> Check:
    return memo.get("bsv_network", settings.HEALTH_CACHE_SECONDS, _ask_network)


def overdue_households(now: datetime) -> int:
    """Households in arrears (payments/figures.py: the dashboard's and the admin's figure)."""
    return HourlyUsage.objects.filter(figures.in_arrears(now)).order_by().values("household_id").distinct().count()


def check_backlog(now: datetime) -> Check:
    max_age = timedelta(seconds=settings.HEALTH_SIGNED_MAX_AGE)
    try:
        with time_limited(settings.HEALTH_TIMEOUT_SECONDS):
            # The (state, updated_at) index finds the few signed settlements.
            stuck = Settlement.objects.filter(state=Settlement.State.SIGNED, created_at__lt=now - max_age).count()
        with time_limited(settings.HEALTH_TIMEOUT_SECONDS):
            # A scan of the open usage lines: remembered, like the network's answer.
            overdue = memo.get("overdue", settings.HEALTH_CACHE_SECONDS, lambda: overdue_households(now))
    except DatabaseError as error:
        return _failed("settlement_backlog", error)
    return {"signed_older_than_5min": stuck, "overdue_households": overdue, "ok": stuck == 0}


def run_checks(now: datetime) -> dict[str, Check]:
    checks = {"database": check_database(), "broker": check_broker()}
    database_up = checks["database"]["ok"]
    checks["beat"] = check_beat(now) if database_up else dict(UNAVAILABLE)
    checks["price"] = check_price(now) if database_up else dict(UNAVAILABLE)
    checks["bsv_network"] = check_network()
    checks["settlement_backlog"] = check_backlog(now) if database_up else dict(UNAVAILABLE)
    return checks


def all_ok(checks: dict[str, Check]) -> bool:
    return all(check["ok"] for check in checks.values())


@require_safe
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    checks = run_checks(timezone.now())
    healthy = all_ok(checks)
    return JsonResponse({"status": "ok" if healthy else "fail", "checks": checks}, status=200 if healthy else 503)
