"""The Celery app: ``celery -A energypay worker`` and ``celery -A energypay beat``."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energypay.settings")

app = Celery("energypay")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.conf.imports = ["energypay.tasks"]  # autodiscovered too (energypay is an app for its admin); named on purpose
# The beat schedule is CELERY_BEAT_SCHEDULE in settings.py.
