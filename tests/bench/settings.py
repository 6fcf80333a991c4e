"""Settings for `make bench`: the production settings, plus a bare view to measure the framework's ceiling."""

from __future__ import annotations

from energypay.settings import *  # noqa: F403

ROOT_URLCONF = "tests.bench.urls"
