"""gunicorn settings for EnergyPay's web processes: `gunicorn -c gunicorn.conf.py energypay.wsgi:application`.

gunicorn reads this file as Python. Every value that differs between machines comes from the
environment (GUNICORN_*), with defaults for one machine behind nginx on the same host. The reasons
for each number, and the nginx site that goes in front, are in docs/operations.md ("Web: gunicorn").
"""

from __future__ import annotations

import multiprocessing
import os

from gunicorn import glogging

from energypay.logging import redact


def _env_int(name: str, default: int, minimum: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"{name}={text!r} is not a whole number.") from None
    if value < minimum:
        raise SystemExit(f"{name}={value} is below {minimum}.")
    return value


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")

# Sync workers: requests are short and mostly wait for PostgreSQL, so about 2 x cores + 1. Slow
# clients never hold one: nginx reads the whole request before passing it on (docs/operations.md).
worker_class = "sync"
workers = _env_int("GUNICORN_WORKERS", 2 * multiprocessing.cpu_count() + 1, minimum=1)

# A worker busy longer than this is killed and replaced; the slowest page is a year's CSV export.
timeout = _env_int("GUNICORN_TIMEOUT", 30, minimum=5)
# On SIGTERM or SIGHUP, requests in flight get this long to finish.
graceful_timeout = _env_int("GUNICORN_GRACEFUL_TIMEOUT", 30, minimum=1)
# Sync workers close each connection after its answer and ignore this; it applies if the worker class
# becomes gthread. Above nginx's upstream keepalive_timeout it would be pointless, below it harmful: keep 5.
keepalive = 5

# Recycle each worker now and then (a safety net: memory does not grow under load, see benchmarks.md).
max_requests = _env_int("GUNICORN_MAX_REQUESTS", 10_000, minimum=0)
max_requests_jitter = max_requests // 10

# --- Request size ---
# The documented limits are API_MAX_PAYMENT_HEADER_BYTES (X-PAYMENT, 32 KiB) and API_MAX_HEADER_BYTES
# (48 KiB in all) in energypay/settings.py; tests/energypay/test_headers.py checks that they fit here.
# A header line may be longer than the documented X-PAYMENT: a larger one still reaches Django, whose
# middleware answers it with JSON 431 (energypay/middleware.py). Past 64 KiB gunicorn refuses it itself
# (its own plain 431), as nginx does before it.
limit_request_field_size = 64 * 1024
# 100 fields of up to 64 KiB would let one request make a sync worker buffer 6 MB; no client sends 50.
limit_request_fields = 50
# The request line (method, path, query): gunicorn's maximum. No EnergyPay URL comes near it.
limit_request_line = 8190

# The proxy's address: only it may say the request came over HTTPS (X-Forwarded-Proto). Django decides
# by SECURE_PROXY_SSL_HEADER; this is gunicorn's own view (wsgi.url_scheme). A comma-separated list.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# The workers' heartbeat files on tmpfs: on a busy or slow disk gunicorn could take a live worker for dead.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (a tmpfs, not a temp file)

accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-") or None  # "" turns it off


class RedactedAtoms(glogging.SafeAtoms):
    """gunicorn's atoms, each passed through the application's redaction when the access line reads it.

    The line reads the dozen atoms its format names; redacting all of them up front (every request header,
    every environ entry) cost 0.1-0.3 ms a request, and 3-8 ms for an /api/ request with a 32 KiB X-PAYMENT,
    which appears twice (header and environ) and which no access line shows.
    """

    def __init__(self, atoms: dict) -> None:
        dict.__init__(self, atoms)  # kept raw: redacted, then escaped as SafeAtoms does, when read

    def __getitem__(self, key: str):
        value = super().__getitem__(key)
        return redact(value, None).replace('"', '\\"') if isinstance(value, str) else value


class RedactingLogger(glogging.Logger):
    """gunicorn's logger, with the access line's fields passed through the application's redaction.

    The link of a password-reset mail carries its token in the path, which the access log would write
    in full (Django's LOGGING redacts its own records, never gunicorn's).
    """

    atoms_wrapper_class = RedactedAtoms


logger_class = RedactingLogger
errorlog = "-"
