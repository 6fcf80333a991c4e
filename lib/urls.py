"""Absolute URLs, for what leaves the site (mails, webhooks): built from the one ``SITE_URL`` setting.

A request knows its own host, a mail sent by a worker does not; so nothing that leaves the site takes
its host from a request (which a client can forge in ``Host``).
"""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse


def absolute_url(path: str) -> str:
    """``SITE_URL`` + ``path`` (``/alarms/`` -> ``https://energypay.example/alarms/``); "" when SITE_URL is unset."""
    site = settings.SITE_URL.rstrip("/")
    if not site:
        return ""
    return site + "/" + path.lstrip("/")


def absolute_reverse(viewname: str, *args: object, **kwargs: object) -> str:
    """``absolute_url(reverse(viewname, ...))``: "" when SITE_URL is unset."""
    return absolute_url(reverse(viewname, args=args or None, kwargs=kwargs or None))
