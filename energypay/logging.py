"""Log records as one line per event, in text or JSON, with secrets taken out of every record.

The code logs events as ``"event key=value ..."`` lines (``ingest meter=5 accepted=3``). Settings
wire these into LOGGING:

- ``RedactSecrets``, a filter on the handlers (a handler filter sees every record that reaches it,
  also those propagated from other loggers, which a logger's filter would not): the configured
  secrets (SECRET_KEY and its fallbacks, WALLET_MASTER_KEY, ARC/WOC/CoinGecko keys, ARC's callback token, e-mail and
  database passwords, passwords in the broker, cache and node URLs the environment sets), meter
  tokens (``mtr_...``), community access tokens (``cpa_...``), webhook signing secrets (``whsec_...``),
  extended private keys,
  ``Authorization`` headers and bearer tokens, the password of any ``scheme://user:pass@`` URL and
  the token of a password-reset link are replaced by ``[REDACTED]`` in the message, its arguments,
  the traceback and string ``extra`` fields. Belt and braces: the code already avoids logging secrets.
- ``JsonFormatter`` (``LOG_FORMAT=json``): one JSON object per line with timestamp (UTC, ISO
  8601), level, logger, event (the message's first word), message, any ``extra`` fields, and
  the traceback as ``exc``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

REDACTED = "[REDACTED]"

# Attributes every LogRecord has; anything else on a record came from ``extra``.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_EVENT = re.compile(r"[a-z][a-z0-9_.]*")
_PATTERNS = [
    re.compile(r"mtr_[A-Za-z0-9_\-]+"),  # meter tokens (meters.models.TOKEN_PREFIX)
    re.compile(r"cpa_[A-Za-z0-9_\-]+"),  # community access tokens (payments.models.ACCESS_TOKEN_PREFIX)
    re.compile(r"whsec_[A-Za-z0-9+/=]+"),  # webhook signing secrets (energypay.webhooks.signing.SECRET_PREFIX)
    re.compile(r"\b[xt]prv[1-9A-HJ-NP-Za-km-z]{100,}"),  # BIP32 extended private keys
    re.compile(r"(?i)(?<=authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+(?:[ \t]+[^\s'\",}]+)?"),
    re.compile(r"(?i)(?<=bearer )[A-Za-z0-9._~+/=\-]+"),
    re.compile(r"(?<=://)([^/\s:@]*:)[^/\s@]+(?=@)"),  # the password of user:password@ in any URL
    # The token of a password-reset link, as an access log would show its path (not the set-password step).
    re.compile(r"(/password-reset/[^/\s]+/)(?!set-password/)[^/\s?\"']+"),
]
_SECRET_SETTINGS = (
    "SECRET_KEY",
    "WALLET_MASTER_KEY",
    "ARC_API_KEY",
    "ARC_CALLBACK_TOKEN",
    "WOC_API_KEY",
    "COINGECKO_API_KEY",
)
_URL_SETTINGS = ("CELERY_BROKER_URL", "CACHE_URL", "BSV_NODE_RPC_URL")
_SHORTEST_SECRET = 6  # shorter values (a dev password "x") would blank out ordinary words


def configured_secrets() -> list[str]:
    """The secret values in the settings, longest first (so a secret containing another goes whole)."""
    from django.conf import settings

    values = [getattr(settings, name, "") or "" for name in _SECRET_SETTINGS]
    values += list(getattr(settings, "SECRET_KEY_FALLBACKS", []))  # old keys during a rotation
    values.append(getattr(settings, "EMAIL_HOST_PASSWORD", "") or "")
    values += [database.get("PASSWORD") or "" for database in getattr(settings, "DATABASES", {}).values()]
    for name in _URL_SETTINGS:
        # As the deployment set them: the defaults in settings.py (the regtest node's energypay:energypay)
        # are public, and redacting "energypay" would blank the project's own name out of every line.
        try:
            values.append(urlsplit(os.environ.get(name, "")).password or "")
        except ValueError:
            continue
    return sorted({value for value in values if len(value) >= _SHORTEST_SECRET}, key=len, reverse=True)


def redact(text: str, secrets: re.Pattern | None) -> str:
    if secrets is not None:
        text = secrets.sub(REDACTED, text)
    for pattern in _PATTERNS:
        if pattern.groups:
            text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
        else:
            text = pattern.sub(REDACTED, text)
    return text


class RedactSecrets(logging.Filter):
    """Take secrets out of every record that reaches the handler (see the module docstring)."""

    @cached_property
    def _secrets(self) -> re.Pattern | None:
        # Read on first use: LOGGING is configured while settings are still being loaded.
        values = configured_secrets()
        return re.compile("|".join(re.escape(value) for value in values)) if values else None

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what can be shown, never drop the record
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(message, self._secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
            record.exc_info = None  # formatters print exc_text; the traceback objects stay unprinted
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value, self._secrets))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        first = message.split(" ", 1)[0]
        entry: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": first if _EVENT.fullmatch(first) else None,
            "message": message,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return json.dumps(entry, default=str, ensure_ascii=False)
