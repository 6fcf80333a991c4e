"""Typed readers for settings that come from the environment.

Each helper returns the default when the variable is unset or empty, and raises
``ImproperlyConfigured`` naming the variable when its value cannot be used, so a bad
deployment fails at start with a message instead of misbehaving later.
"""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import available_timezones

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _fail(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name}={value!r} is not valid: expected {expected}.")


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise _fail(name, value, "one of true/false, 1/0, yes/no, on/off")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise _fail(name, value, "a whole number") from None
    if minimum is not None and number < minimum:
        raise _fail(name, value, f"a whole number of at least {minimum}")
    return number


def env_decimal(name: str, default: Decimal, *, positive: bool = False) -> Decimal:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _fail(name, value, "a decimal number") from None
    if not number.is_finite() or (positive and number <= 0):
        raise _fail(name, value, "a positive decimal number" if positive else "a finite number")
    return number


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise _fail(name, value, "one of " + ", ".join(choices))
    return value


def env_timezone(name: str, default: str) -> str:
    value = env_str(name, default)
    if value not in available_timezones():
        raise _fail(name, value, "an IANA time zone such as Europe/Madrid")
    return value


def env_database(name: str, default_sqlite: Path) -> dict:
    """Parse ``DATABASE_URL`` (``postgres://user:pass@host:port/db?sslmode=...`` or ``sqlite:///path``)."""
    value = _raw(name)
    if value is None:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(default_sqlite)}
    url = urlsplit(value)
    if url.scheme in {"postgres", "postgresql"}:
        if not url.path.strip("/"):
            raise _fail(name, "<hidden>", "a database name in the URL path")
        options = {key: values[-1] for key, values in parse_qs(url.query).items()}
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(url.path.lstrip("/")),
            "USER": unquote(url.username or ""),
            "PASSWORD": unquote(url.password or ""),
            "HOST": url.hostname or "",
            "PORT": str(url.port or ""),
            "OPTIONS": options,
        }
    if url.scheme == "sqlite":
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/path.db -> "/abs/path.db".
        path = unquote(url.path)[1:]
        if not path:
            raise _fail(name, value, "a file path, as in sqlite:///energypay.sqlite3")
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path}
    # The URL may carry a password: never echo it back.
    raise _fail(name, f"{url.scheme}://…", "a postgres:// or sqlite:/// URL")
