"""Logs: one line per event, text or JSON (LOG_FORMAT=json), and no secret ever reaches the output."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from energypay.logging import JsonFormatter, RedactSecrets

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "mtr_Zk3q9X-abcDEF_0123456789abcdefghijklmnopq"
XPRV = "tprv8ZgxMBicQKsPd9TeAdPADNnSyH9SSUUbTVeFszDE23Ki6TBB5nCefAdHkK8Fm3qMQR6sHwA56zqRmKmxnHk37JkiFzvncDqoKmPWubu7hDF"


@pytest.fixture
def secrets(settings, monkeypatch):
    settings.SECRET_KEY = "django-secret-0123456789-abcdefghijklmnopqrstuvwxyz-ABCDEFG"
    settings.SECRET_KEY_FALLBACKS = ["old-django-secret-being-rotated-out-0123456789abcdef"]
    settings.WALLET_MASTER_KEY = XPRV
    settings.ARC_API_KEY = "arc-api-key-5f4dcc3b5aa765d61d8327deb882cf99"
    settings.WOC_API_KEY = "woc-api-key-e99a18c428cb38d5f260853678922e03"
    settings.EMAIL_HOST_PASSWORD = "smtp-password-hunter2"
    # Not through the settings fixture: it warns that the open connections keep theirs (which is fine here).
    from django.conf import settings as django_settings

    monkeypatch.setattr(
        django_settings, "DATABASES", {"default": {**settings.DATABASES["default"], "PASSWORD": "pg-pw-42x"}}
    )
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://:redis-pw-77@cache.internal:6379/0")
    return [
        settings.SECRET_KEY,
        settings.SECRET_KEY_FALLBACKS[0],
        XPRV,
        settings.ARC_API_KEY,
        settings.WOC_API_KEY,
        "smtp-password-hunter2",
        "pg-pw-42x",
        "redis-pw-77",
        TOKEN,
    ]


def emit(*args, formatter: logging.Formatter | None = None, **kwargs) -> str:
    """Log through a handler wired as settings.LOGGING wires the console; return what it wrote."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(formatter or logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("tests.logging.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning(*args, **kwargs)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    return stream.getvalue()


def test_configured_secrets_are_redacted_from_message_and_arguments(secrets):
    written = emit("settlement_error detail=%s other=%r", " ".join(secrets[:4]), secrets[4:])
    for secret in secrets:
        assert secret not in written
    assert written.startswith("WARNING tests.logging.redaction settlement_error detail=[REDACTED]")


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (f"ingest token={TOKEN} meter=5", "ingest token=[REDACTED] meter=5"),
        (
            "headers={'Authorization': 'Bearer abc.def-123', 'Accept': '*/*'}",
            "{'Authorization': '[REDACTED]', 'Accept'",
        ),
        ("Authorization: Bearer abc.def-123", "Authorization: [REDACTED]"),
        ("HTTP_AUTHORIZATION=Basic dXNlcjpwYXNz", "HTTP_AUTHORIZATION=[REDACTED]"),
        ("sent bearer eyJhbGciOi.payload.sig", "sent bearer [REDACTED]"),
        ("node http://rpcuser:s3cr3t@10.0.0.2:18332/ down", "node http://rpcuser:[REDACTED]@10.0.0.2:18332/ down"),
        (f"key {XPRV} loaded", "key [REDACTED] loaded"),
    ],
)
def test_secret_shapes_are_redacted_even_when_not_configured(db, line, shown):
    assert shown in emit("%s", line)


def test_ordinary_lines_pass_unchanged(db, settings):
    settings.BSV_NODE_RPC_URL = "http://energypay:energypay@127.0.0.1:18332"  # the public regtest default
    line = "energypay.tasks.heartbeat ingest meter=12 accepted=3 duplicates=0 rejected=1 txid=" + "ab" * 32
    assert emit(line) == f"WARNING tests.logging.redaction {line}\n"


def test_tracebacks_and_extra_fields_are_redacted(secrets):
    try:
        raise RuntimeError(f"could not connect with {secrets[3]}")
    except RuntimeError:
        written = emit("woc_failed", exc_info=True, extra={"url": f"https://x/?key={secrets[2]}"})
    assert "RuntimeError: could not connect with [REDACTED]" in written
    assert secrets[3] not in written and secrets[2] not in written


def test_json_lines_carry_event_fields_and_extras(secrets):
    written = emit(
        "ingest meter=%s accepted=%d token=%s", 7, 3, TOKEN, formatter=JsonFormatter(), extra={"household": 42}
    )
    assert written.count("\n") == 1
    entry = json.loads(written)
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "tests.logging.redaction"
    assert entry["event"] == "ingest"
    assert entry["message"] == "ingest meter=7 accepted=3 token=[REDACTED]"
    assert entry["household"] == 42
    assert entry["timestamp"].endswith("+00:00")


def test_json_keeps_a_traceback_inside_its_one_line(secrets):
    try:
        raise ValueError(f"bad key {XPRV}")
    except ValueError:
        written = emit("price_failed", exc_info=True, formatter=JsonFormatter())
    assert written.count("\n") == 1
    entry = json.loads(written)
    assert entry["event"] == "price_failed"
    assert "ValueError: bad key [REDACTED]" in entry["exc"]


def _log_from_django(log_format: str, code: str) -> str:
    environ = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "CACHE_URL"}}
    environ.update(
        LOG_FORMAT=log_format, DJANGO_SETTINGS_MODULE="energypay.settings", ARC_API_KEY="arc-key-from-env-xyz"
    )
    program = f"import django, logging; django.setup(); {code}"
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


def test_settings_wire_json_and_redaction_into_every_logger():
    written = _log_from_django(
        "json",
        f"logging.getLogger('payments.networks.arc').warning('arc_down key=%s token=%s', 'arc-key-from-env-xyz', "
        f"'{TOKEN}'); logging.getLogger('celery.worker').error('boom')",
    )
    lines = [json.loads(line) for line in written.strip().splitlines()]
    assert [(entry["logger"], entry["message"]) for entry in lines] == [
        ("payments.networks.arc", "arc_down key=[REDACTED] token=[REDACTED]"),
        ("celery.worker", "boom"),
    ]


def test_the_default_format_is_one_text_line_per_event():
    written = _log_from_django("text", "logging.getLogger('meters.api').info('ingest meter=%s accepted=%d', 5, 3)")
    assert written.strip().endswith("INFO meters.api ingest meter=5 accepted=3")
    assert written.count("\n") == 1


def test_workers_log_through_the_same_handlers():
    from django.conf import settings

    assert settings.CELERY_WORKER_HIJACK_ROOT_LOGGER is False
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["redact"]
