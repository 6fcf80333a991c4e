from __future__ import annotations

import os
import subprocess
import sys

from energypay.celery import app
from energypay.ops.models import Heartbeat
from energypay.tasks import HEARTBEAT, heartbeat


def test_beat_schedule_names_registered_tasks():
    app.loader.import_default_modules()
    for entry in app.conf.beat_schedule.values():
        assert entry["task"] in app.tasks


def test_heartbeat_records_the_tick(db):
    heartbeat.apply()
    assert Heartbeat.objects.filter(name=HEARTBEAT).exists()


def _broker_for(**environ: str) -> str:
    code = "from energypay.celery import app; print(app.connection().transport_cls, app.conf.broker_url)"
    clean = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"} | environ
    return subprocess.run(
        [sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def test_default_broker_is_files_on_disk_and_redis_is_one_setting_away():
    assert _broker_for().split() == ["filesystem", "filesystem://localhost/"]
    assert _broker_for(CELERY_BROKER_URL="redis://127.0.0.1:6379/3").split() == ["redis", "redis://127.0.0.1:6379/3"]


def test_the_default_broker_connects_without_kombus_missing_host_warning(tmp_path):
    # Every process (web, worker, beat) printed "No hostname was supplied" on `make demo`'s console.
    code = "import django; django.setup(); from energypay.celery import app; print(app.connection().info()['hostname'])"
    clean = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"} | {"ENERGYPAY_VAR_DIR": str(tmp_path)}
    command = [sys.executable, "-c", code]
    run = subprocess.run(command, env=clean, capture_output=True, text=True, check=True, timeout=60)
    assert run.stdout.split() == ["localhost"]
    assert "No hostname" not in run.stderr
