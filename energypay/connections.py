"""The staff settings and connections page, ``/admin/settings/``: what this deployment talks to, and whether it answers.

Each connection shows its configuration with every secret masked (API keys: the last 4 characters;
passwords in URLs: none of it) and its live status, with a "test" button that asks again (POST,
htmx swaps the row). The checks are /healthz's (energypay/health.py: database, broker, price, BSV
network), each bounded in time; the cache, mail server and ARC have checks of their own here, run
under the same timeout. Nothing secret reaches the page: values are masked before the template sees
them, and every detail a check returns passes through ``scrub``, which hides the configured secrets
and any credentials in a URL.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from django.conf import settings
from django.contrib import admin
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.mail import get_connection
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST
from django.views.decorators.vary import vary_on_headers

from energypay import health
from lib.htmx import VARY, partial_requested

log = logging.getLogger(__name__)

PERMISSION = "onboarding.view_connections"
SHOWN = 4  # characters of a key shown at its end
SHORT = 12  # a secret shorter than this shows nothing: its last 4 would be a third of it
SECRET_WORDS = ("key", "token", "secret", "password", "pass", "auth", "signature")
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="connection-check")

Check = dict[str, Any]


# --- Masks ------------------------------------------------------------------------------------------


def mask(secret: str) -> str:
    """ "not set", or dots and the last 4 characters (nothing of a short secret)."""
    if not secret:
        return "not set"
    if len(secret) < SHORT:
        return "set (hidden)"
    return "•" * 8 + secret[-SHOWN:]


def mask_url(url: str) -> str:
    """The URL with its password (and any secret-looking query value) replaced; the host and path stay."""
    if not url:
        return ""
    if "@" not in url and "?" not in url:
        return url  # nothing to hide (and "filesystem://" stays as written)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            credentials, host = netloc.rsplit("@", 1)
            user = credentials.split(":", 1)[0]
            netloc = f"{user}:****@{host}" if ":" in credentials else f"****@{host}"
        query = urlencode(
            [
                (name, "****" if any(word in name.lower() for word in SECRET_WORDS) else value)
                for name, value in parse_qsl(parts.query, keep_blank_values=True)
            ],
            safe="*",
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "(set; not shown: it does not parse as a URL)"


def configured_secrets() -> list[str]:
    """Every secret this deployment holds, for ``scrub``: keys, passwords, and the passwords inside URLs."""
    database = settings.DATABASES["default"]
    values = [
        settings.SECRET_KEY,
        *settings.SECRET_KEY_FALLBACKS,
        settings.WALLET_MASTER_KEY,
        settings.ARC_API_KEY,
        settings.WOC_API_KEY,
        settings.COINGECKO_API_KEY,
        settings.EMAIL_HOST_PASSWORD,
        database.get("PASSWORD") or "",
        getattr(settings, "ARC_CALLBACK_TOKEN", "") or "",
    ]
    for url in (settings.CELERY_BROKER_URL, settings.CACHE_URL, settings.BSV_NODE_RPC_URL):
        password = _url_password(url)
        values.append(password)
    return [value for value in values if value and len(value) >= 4]


def scrub(text: str) -> str:
    """``text`` with every configured secret and every URL credential masked: for details checks return."""
    for secret in sorted(configured_secrets(), key=len, reverse=True):
        text = text.replace(secret, mask(secret))
    words = text.split(" ")
    return " ".join(mask_url(word) if "://" in word and "@" in word else word for word in words)


def _url_password(url: str) -> str:
    try:
        return urlsplit(url).password or ""
    except ValueError:
        return ""


# --- Checks -----------------------------------------------------------------------------------------


def bounded(name: str, check: Callable[[], Check]) -> Check:
    """Run ``check`` for at most HEALTH_TIMEOUT_SECONDS (plus a second of slack); a check that hangs fails."""
    seconds = settings.HEALTH_TIMEOUT_SECONDS
    started = time.monotonic()
    future = _executor.submit(check)
    try:
        result = future.result(timeout=seconds + 1)
    except FutureTimeout:
        log.warning("connection_check_timeout check=%s", name)
        return {"ok": False, "detail": f"no answer within {seconds} s"}
    except Exception as error:  # a check that fails in an unforeseen way shows as failed, never as a 500
        log.warning("connection_check_failed check=%s error=%s", name, type(error).__name__)
        return {"ok": False, "detail": type(error).__name__}
    result.setdefault("latency_ms", round((time.monotonic() - started) * 1000, 1))
    return result


def _timed(check: Callable[[], Check]) -> Check:
    started = time.monotonic()
    try:
        result = check()
    except Exception as error:  # never a 500 for a failing check
        log.warning("connection_check_failed error=%s", type(error).__name__)
        return {"ok": False, "detail": type(error).__name__}
    result.setdefault("latency_ms", round((time.monotonic() - started) * 1000, 1))
    return result


def check_cache() -> Check:
    key = f"connections-probe-{secrets.token_hex(8)}"
    nonce = secrets.token_hex(8)
    try:
        cache.set(key, nonce, timeout=10)
        answered = cache.get(key)
        cache.delete(key)
    except Exception as error:  # whatever the backend raises: "not reachable"
        return {"ok": False, "detail": type(error).__name__}
    return {"ok": answered == nonce, "detail": "write and read back" if answered == nonce else "read back nothing"}


def check_email() -> Check:
    backend = settings.EMAIL_BACKEND
    if not backend.endswith("smtp.EmailBackend"):
        return {"ok": True, "detail": f"no mail server: {backend.rsplit('.', 1)[-1]}"}
    connection = get_connection(timeout=settings.HEALTH_TIMEOUT_SECONDS)
    try:
        connection.open()  # connects, says EHLO, starts TLS and logs in when configured
        connection.close()
    except Exception as error:  # smtplib and socket errors alike
        return {"ok": False, "detail": type(error).__name__}
    return {"ok": True, "detail": "connected" + (" and logged in" if settings.EMAIL_HOST_USER else "")}


def check_arc() -> Check:
    if settings.BSV_NETWORK not in {"testnet", "mainnet"}:
        return {"ok": True, "detail": f"not used on {settings.BSV_NETWORK}"}
    headers = {"Authorization": f"Bearer {settings.ARC_API_KEY}"} if settings.ARC_API_KEY else {}
    try:
        response = requests.get(
            settings.ARC_URL.rstrip("/") + "/v1/policy",
            headers=headers,
            timeout=settings.HEALTH_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as error:
        return {"ok": False, "detail": type(error).__name__}
    return {"ok": response.ok, "detail": f"HTTP {response.status_code}"}


def check_network(*, fresh: bool) -> Check:
    if fresh:
        health.memo.clear()  # the test button asks the network now, not the memo of the last minute
    result = health.check_network()
    return {"ok": result["ok"], "detail": f"{result['name']}: {result['detail']}"}


def check_node() -> Check:
    if settings.BSV_NETWORK != "regtest":
        return {"ok": True, "detail": f"not used on {settings.BSV_NETWORK}"}
    return check_network(fresh=True)


def check_price() -> Check:
    result = health.check_price(timezone.now())
    age = result.get("age_seconds")
    detail = result.get("error") or ("no quote yet" if age is None else f"last quote {_age_text(age)} old")
    return {"ok": result["ok"], "detail": detail}


def _age_text(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


def _from_health(check: Callable[[], Check]) -> Callable[[], Check]:
    def run() -> Check:
        result = check()
        hidden = {"ok", "latency_ms"}
        details = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in result.items() if k not in hidden)
        return {"ok": result["ok"], "detail": details, **{k: v for k, v in result.items() if k == "latency_ms"}}

    return run


# --- What the page lists ----------------------------------------------------------------------------


@dataclass
class Connection:
    name: str
    title: str
    settings: list[tuple[str, str]]  # (label, masked value)
    check: Callable[[], Check]
    # Checks that query the database run in the request's thread, under health.time_limited's statement
    # timeout: a thread of their own would open (and keep) a database connection of its own.
    in_thread: bool = True


def connections() -> dict[str, Connection]:
    database = settings.DATABASES["default"]
    db_where = (
        f"{database.get('USER') or ''}@{database.get('HOST') or 'local socket'}:{database.get('PORT') or ''}"
        if database["ENGINE"].endswith("postgresql")
        else "a file"
    )
    network = settings.BSV_NETWORK
    listed = [
        Connection(
            "database",
            "Database",
            [
                ("engine", database["ENGINE"].rsplit(".", 1)[-1]),
                ("name", str(database.get("NAME") or "")),
                ("where", db_where),
                ("password", mask(database.get("PASSWORD") or "")),
            ],
            _from_health(health.check_database),
            in_thread=False,
        ),
        Connection(
            "broker",
            "Broker (Celery)",
            [("CELERY_BROKER_URL", mask_url(settings.CELERY_BROKER_URL))],
            _from_health(health.check_broker),
        ),
        Connection(
            "cache",
            "Cache",
            [("CACHE_URL", mask_url(settings.CACHE_URL) or "not set: a cache inside each process")],
            check_cache,
        ),
        Connection(
            "email",
            "Email (SMTP)",
            [
                ("EMAIL_BACKEND", settings.EMAIL_BACKEND),
                ("EMAIL_HOST", f"{settings.EMAIL_HOST or 'not set'}:{settings.EMAIL_PORT}"),
                ("EMAIL_HOST_USER", settings.EMAIL_HOST_USER or "not set"),
                ("EMAIL_HOST_PASSWORD", mask(settings.EMAIL_HOST_PASSWORD)),
                ("EMAIL_USE_TLS", str(settings.EMAIL_USE_TLS)),
                ("DEFAULT_FROM_EMAIL", settings.DEFAULT_FROM_EMAIL),
            ],
            check_email,
        ),
        Connection(
            "network",
            "BSV network",
            [
                ("BSV_NETWORK", network),
                ("UTILITY_ADDRESS", settings.UTILITY_ADDRESS or "not set (the demo address)"),
                (
                    "WALLET_MASTER_KEY",
                    "set (never shown)" if settings.WALLET_MASTER_KEY else "not set (a dev key in var/)",
                ),
                ("EXPLORER_TX_URL", settings.EXPLORER_TX_URL or "none"),
            ],
            lambda: check_network(fresh=True),
        ),
        Connection(
            "arc",
            "ARC and WhatsOnChain",
            [
                ("ARC_URL", mask_url(settings.ARC_URL)),
                ("ARC_API_KEY", mask(settings.ARC_API_KEY)),
                ("WhatsOnChain", _woc_url()),
                ("WOC_API_KEY", mask(settings.WOC_API_KEY)),
            ],
            check_arc,
        ),
        Connection(
            "node",
            "BSV node (regtest)",
            [("BSV_NODE_RPC_URL", mask_url(settings.BSV_NODE_RPC_URL))],
            check_node,
        ),
        Connection(
            "price",
            "Price source",
            [
                ("PRICE_SOURCE", settings.PRICE_SOURCE),
                (
                    "BSV_EUR_PRICE" if settings.PRICE_SOURCE == "fixed" else "COINGECKO_API_KEY",
                    str(settings.BSV_EUR_PRICE)
                    if settings.PRICE_SOURCE == "fixed"
                    else mask(settings.COINGECKO_API_KEY),
                ),
                ("PRICE_MAX_AGE", f"{int(settings.PRICE_MAX_AGE.total_seconds())} s"),
            ],
            check_price,
            in_thread=False,
        ),
    ]
    return {connection.name: connection for connection in listed}


def _woc_url() -> str:
    if settings.BSV_NETWORK not in {"testnet", "mainnet"}:
        return f"not used on {settings.BSV_NETWORK}"
    from payments.networks.arc import WOC_URL

    return WOC_URL.format(chain="main" if settings.BSV_NETWORK == "mainnet" else "test")


def run(connection: Connection) -> Check:
    result = bounded(connection.name, connection.check) if connection.in_thread else _timed(connection.check)
    result["detail"] = scrub(str(result.get("detail", "")))
    return result


# --- Views ------------------------------------------------------------------------------------------


def _allowed(request: HttpRequest) -> None:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied


def _row(connection: Connection, result: Check, tested_at=None) -> dict[str, Any]:
    return {"connection": connection, "result": result, "tested_at": tested_at}


@never_cache
def settings_page(request: HttpRequest) -> HttpResponse:
    """Staff with the permission only (energypay/urls.py wraps it in admin.site.admin_view)."""
    _allowed(request)
    listed = connections()
    # The network checks wait side by side; the database ones run here, one after the other.
    waiting = {name: _executor.submit(run, c) for name, c in listed.items() if c.in_thread}
    results = {name: run(c) for name, c in listed.items() if not c.in_thread}
    results |= {name: future.result() for name, future in waiting.items()}
    context = {
        **admin.site.each_context(request),
        "title": "Settings and connections",
        "rows": [_row(connection, results[name]) for name, connection in listed.items()],
        "now": timezone.now(),
    }
    return TemplateResponse(request, "admin/settings.html", context)


@require_POST
@never_cache
@vary_on_headers(*VARY)
def test_connection(request: HttpRequest, name: str) -> HttpResponse:
    """Check one connection now: its row (htmx) or the whole page with it (a plain POST)."""
    _allowed(request)
    listed = connections()
    if name not in listed:
        raise Http404("no such connection")
    result = run(listed[name])
    log.info("connection_tested name=%s ok=%s by=%s", name, result["ok"], request.user.pk)
    if partial_requested(request):
        return TemplateResponse(
            request, "admin/settings.html#connection", {"row": _row(listed[name], result, timezone.now())}
        )
    results = {other: run(connection) for other, connection in listed.items() if other != name} | {name: result}
    context = {
        **admin.site.each_context(request),
        "title": "Settings and connections",
        "rows": [_row(c, results[n], timezone.now() if n == name else None) for n, c in listed.items()],
        "now": timezone.now(),
    }
    return TemplateResponse(request, "admin/settings.html", context)
