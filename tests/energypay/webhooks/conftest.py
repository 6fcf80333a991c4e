from __future__ import annotations

import pytest

from energypay.webhooks import events
from energypay.webhooks.models import WebhookEndpoint
from tests.energypay.webhooks.receiver import Receiver

ALL_EVENTS = sorted(events.EVENT_TYPES)


@pytest.fixture(autouse=True)
def _receivers_on_loopback(settings):
    """The receivers of these tests listen on 127.0.0.1 over plain HTTP; tests of the guards turn this off.

    Short timeouts: a receiver that hangs costs each test a second, not the production ten.
    """
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    settings.WEBHOOK_ALLOW_HTTP = True
    settings.WEBHOOK_CONNECT_TIMEOUT = 1
    settings.WEBHOOK_READ_TIMEOUT = 1


@pytest.fixture
def receiver():
    receiver = Receiver()
    yield receiver
    receiver.close()


def make_endpoint(url: str, types: list[str] | None = None, **fields) -> tuple[WebhookEndpoint, str]:
    """An endpoint as staff would add it; returns it and its secret (shown once)."""
    endpoint = WebhookEndpoint(url=url, events=ALL_EVENTS if types is None else types, **fields)
    secret = endpoint.issue_secret()
    endpoint.save()
    return endpoint, secret


@pytest.fixture
def endpoint(db, receiver) -> tuple[WebhookEndpoint, str]:
    return make_endpoint(receiver.url)
