"""The demo's webhook endpoint: a receiver on this machine (``manage.py webhook_receiver``) that ``make demo`` starts.

seed_demo registers it, subscribed to every event, and keeps its secret in var/ (never in the
repository, like the demo wallet key), where the receiver reads it to verify each request.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from energypay.webhooks.events import EVENT_TYPES
from energypay.webhooks.models import WebhookEndpoint

DEMO_PORT = 8001
DESCRIPTION = "Demo receiver (manage.py webhook_receiver)"


def demo_url(port: int = DEMO_PORT) -> str:
    return f"http://127.0.0.1:{port}/webhooks"


def secret_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-webhook-secret"


def write_secret(secret: str) -> None:
    path = secret_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")


def read_secret() -> str:
    return secret_file().read_text().strip()


def ensure_endpoint(port: int = DEMO_PORT) -> tuple[WebhookEndpoint, bool]:
    """The demo endpoint, made once; a new secret when var/ lost the one it had. Returns it and whether it is new."""
    endpoint = WebhookEndpoint.objects.filter(url=demo_url(port)).first()
    if endpoint is not None and secret_file().exists():
        return endpoint, False
    if endpoint is None:
        endpoint = WebhookEndpoint(url=demo_url(port), description=DESCRIPTION, events=sorted(EVENT_TYPES))
        secret = endpoint.issue_secret()
        endpoint.save()
        created = True
    else:
        from django.utils import timezone

        secret, created = endpoint.rotate_secret(timezone.now()), False
    write_secret(secret)
    return endpoint, created
