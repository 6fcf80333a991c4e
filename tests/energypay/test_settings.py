"""Settings come from the environment and bad values fail at start with a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from energypay import env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("off", False), ("NO", False), ("", True)])
def test_env_bool_reads_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("FLAG", raw)
    assert env.env_bool("FLAG", True) is expected


def test_env_bool_rejects_anything_else(monkeypatch):
    monkeypatch.setenv("FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="FLAG='maybe' is not valid"):
        env.env_bool("FLAG", False)


def test_env_int_enforces_minimum(monkeypatch):
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env.env_int("N", 5, minimum=1)
    monkeypatch.setenv("N", "12")
    assert env.env_int("N", 5, minimum=1) == 12


def test_env_decimal_is_exact_and_positive(monkeypatch):
    monkeypatch.setenv("PRICE", "31.20")
    assert env.env_decimal("PRICE", Decimal(1), positive=True) == Decimal("31.20")
    monkeypatch.setenv("PRICE", "-1")
    with pytest.raises(ImproperlyConfigured, match="positive"):
        env.env_decimal("PRICE", Decimal(1), positive=True)


def test_env_database_reads_postgres_urls(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://app:s%40cret@db.internal:6432/energy?sslmode=require")
    config = env.env_database("DATABASE_URL", Path("x.sqlite3"))
    assert config == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "energy",
        "USER": "app",
        "PASSWORD": "s@cret",
        "HOST": "db.internal",
        "PORT": "6432",
        "OPTIONS": {"sslmode": "require"},
    }


def test_env_database_defaults_to_sqlite_and_reads_sqlite_urls(monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert env.env_database("DATABASE_URL", Path("/tmp/a.sqlite3"))["NAME"] == "/tmp/a.sqlite3"
    monkeypatch.setenv("DATABASE_URL", "sqlite:////var/lib/energypay.db")
    assert env.env_database("DATABASE_URL", Path("x"))["NAME"] == "/var/lib/energypay.db"


def test_bad_database_url_never_echoes_its_password(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://root:hunter2@db/energy")
    with pytest.raises(ImproperlyConfigured) as error:
        env.env_database("DATABASE_URL", Path("x"))
    assert "hunter2" not in str(error.value)


def _start_django(**overrides: str) -> subprocess.CompletedProcess:
    environ = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "SECRET_KEY"}}
    environ.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEBUG": "false"}, "SECRET_KEY must be set when DEBUG is off."),
        ({"DEBUG": "sometimes"}, "DEBUG='sometimes' is not valid"),
        ({"INGEST_RATE_LIMIT_PER_MINUTE": "fast"}, "INGEST_RATE_LIMIT_PER_MINUTE='fast' is not valid"),
        ({"INGEST_BACKFILL_DAYS": "0"}, "INGEST_BACKFILL_DAYS='0' is not valid"),
        ({"CELERY_BROKER_URL": "kafka://x"}, "CELERY_BROKER_URL must be"),
        ({"TIME_ZONE": "Mars/Olympus"}, "TIME_ZONE='Mars/Olympus' is not valid"),
    ],
)
def test_server_refuses_to_start_with_bad_configuration(overrides, message):
    result = _start_django(**overrides)
    assert result.returncode != 0
    assert message in result.stderr


def test_default_configuration_starts():
    result = _start_django(DEBUG="true")
    assert result.returncode == 0, result.stderr


def _site_url(**overrides: str) -> str:
    environ = {key: value for key, value in os.environ.items() if key not in {"SITE_URL", "ALARM_SITE_URL"}}
    environ.update(overrides, DEBUG="true")
    code = "from django.conf import settings; print(settings.SITE_URL)"
    command = [sys.executable, "manage.py", "shell", "--no-imports", "-c", code]
    result = subprocess.run(command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_site_url_is_read_from_site_url_and_still_from_its_former_name_alarm_site_url():
    assert _site_url(SITE_URL="https://new.example") == "https://new.example"
    assert _site_url(ALARM_SITE_URL="https://old.example") == "https://old.example"
    assert _site_url(SITE_URL="https://new.example", ALARM_SITE_URL="https://old.example") == "https://new.example"
    assert _site_url() == ""
