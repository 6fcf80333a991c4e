"""The Celery app: ``celery -A energypay worker`` and ``celery -A energypay beat``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energypay.settings")

app = Celery("energypay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.imports = ["energypay.tasks"]  # the project package is not an installed app

# Periodic jobs. Each is idempotent, so an overlapping or repeated tick does no harm.
app.conf.beat_schedule = {
    "heartbeat": {"task": "energypay.tasks.heartbeat", "schedule": 60.0},
}
