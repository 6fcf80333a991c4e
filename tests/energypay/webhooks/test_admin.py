"""Webhooks in the admin: the secret shown once and then only masked, rotation, the test event, redelivery,
re-enabling, the notice of a disabled endpoint, the audit trail; never a secret in a page, a log or an entry."""

from __future__ import annotations

import logging
import re

import pytest
from auditlog.models import LogEntry
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from energypay.webhooks import delivery, events, outbox
from energypay.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.energypay.webhooks.conftest import make_endpoint

pytestmark = pytest.mark.django_db

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{40,}")
ADD = "admin:webhooks_webhookendpoint_add"
CHANGELIST = "admin:webhooks_webhookendpoint_changelist"


def add_endpoint(client, url: str, types=(events.SETTLEMENT_CONFIRMED, events.ALARM_TRIGGERED)):
    return client.post(reverse(ADD), {"url": url, "description": "CRM", "events": list(types), "active": "on"})


def action(client, name: str, rows, model: str = "webhookendpoint"):
    return client.post(
        reverse(f"admin:webhooks_{model}_changelist"),
        {"action": name, "_selected_action": [row.pk for row in rows]},
    )


def text(response) -> str:
    return response.content.decode() + " ".join(f"{k}: {v}" for k, v in response.items())


def test_a_new_endpoints_secret_is_shown_once_and_then_only_masked(staff_client, receiver):
    added = add_endpoint(staff_client, receiver.url)

    assert added.status_code == 200 and "no-store" in added["Cache-Control"]
    [secret] = set(SECRET.findall(added.content.decode()))
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret and endpoint.events == ["alarm.triggered", "settlement.confirmed"]
    pages = [
        staff_client.get(reverse(CHANGELIST)),
        staff_client.get(reverse("admin:webhooks_webhookendpoint_change", args=[endpoint.pk])),
        staff_client.get(reverse("admin:webhooks_webhookendpoint_auditlog", args=[endpoint.pk])),
        staff_client.get(reverse("admin:auditlog_logentry_changelist")),
    ]
    for page in pages:
        assert page.status_code == 200
        assert secret not in text(page) and not SECRET.findall(text(page))
    assert f"whsec_...{secret[-4:]}" in text(pages[0])
    entry = LogEntry.objects.get_for_object(endpoint).get()
    assert entry.action == LogEntry.Action.CREATE and entry.actor.email == "staff@example.com"
    assert "secret" not in entry.changes_dict and secret not in str(entry.changes)


def test_a_url_the_server_may_not_call_is_refused_with_the_reason_and_nothing_is_saved(staff_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    loopback = add_endpoint(staff_client, "https://127.0.0.1/hooks")
    with_password = add_endpoint(staff_client, "https://user:pw@crm.example/hooks")

    assert "private, loopback or link-local" in loopback.content.decode()
    assert "user name or password" in with_password.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_rotation_shows_the_new_secret_once_and_the_old_one_keeps_signing(staff_client, receiver):
    endpoint, old = make_endpoint(receiver.url)

    rotated = action(staff_client, "rotate_secret", [endpoint])

    [new] = set(SECRET.findall(rotated.content.decode()))
    assert new != old and "no-store" in rotated["Cache-Control"]
    outbox.record([(events.SETTLEMENT_CONFIRMED, 1, {"settlement_id": 1})])
    delivery.deliver_due()
    [request] = receiver.requests
    assert Webhook(new).verify(request.body, request.headers) and Webhook(old).verify(request.body, request.headers)
    entries = list(LogEntry.objects.get_for_object(endpoint))
    assert [e.additional_data["action"] for e in entries if e.additional_data] == ["webhook.rotate_secret"]
    [change] = [e for e in entries if e.action == LogEntry.Action.UPDATE and "secret_hint" in e.changes_dict]
    assert change.changes_dict["secret_hint"] == [f"whsec_...{old[-4:]}", f"whsec_...{new[-4:]}"]
    assert not LogEntry.objects.filter(changes__icontains="whsec_").exclude(changes__icontains="whsec_...").exists()


def test_send_test_event_queues_one_for_each_selected_endpoint_and_it_arrives(staff_client, receiver):
    endpoint, secret = make_endpoint(receiver.url, types=[events.METER_SILENT])

    response = action(staff_client, "send_test_event", [endpoint])

    assert "Queued a test event for 1 endpoint" in str(list(get_messages(response.wsgi_request))[-1])
    assert delivery.deliver_due() == {"delivered": 1}
    assert Webhook(secret).verify(receiver.requests[0].body, receiver.requests[0].headers)["type"] == "webhook.test"


def test_the_delivery_log_shows_each_attempt_and_staff_can_redeliver(staff_client, receiver):
    make_endpoint(receiver.url)
    receiver.behaviour = "error"
    outbox.record([(events.SETTLEMENT_CONFIRMED, 1, {"settlement_id": 1})])
    delivery.deliver_due()
    row = WebhookDelivery.objects.get()

    page = staff_client.get(reverse("admin:webhooks_webhookdelivery_change", args=[row.pk]))
    assert page.status_code == 200 and "HTTP 500" in page.content.decode() and "receiver broke" in page.content.decode()
    receiver.behaviour = "ok"
    action(staff_client, "redeliver", [row], model="webhookdelivery")

    assert delivery.deliver_due() == {"delivered": 1}
    row.refresh_from_db()
    assert row.state == "delivered" and row.attempts == 2
    [entry] = LogEntry.objects.filter(additional_data__action="webhook.redeliver")
    assert entry.actor.email == "staff@example.com"


def test_a_disabled_endpoint_is_announced_in_the_admin_and_on_the_status_page_until_re_enabled(staff_client):
    endpoint, _ = make_endpoint("https://crm.example/hooks", description="The CRM")
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        disabled_at=timezone.now(), failing_since=timezone.now(), disabled_reason="Every delivery attempt failed."
    )

    listing = staff_client.get(reverse(CHANGELIST))
    status = staff_client.get(reverse("admin-status"))

    assert "Webhook endpoint The CRM is disabled" in str(next(iter(get_messages(listing.wsgi_request))))
    assert "webhook-disabled" in status.content.decode() and "The CRM" in status.content.decode()
    action(staff_client, "reenable", [endpoint])
    endpoint.refresh_from_db()
    assert endpoint.disabled_at is None
    assert "webhook-disabled" not in staff_client.get(reverse("admin-status")).content.decode()
    assert LogEntry.objects.filter(additional_data__action="webhook.reenable").count() == 1


def test_event_and_delivery_pages_answer_staff(staff_client, receiver):
    make_endpoint(receiver.url)
    outbox.record([(events.ALARM_TRIGGERED, 1, {"code": "alarm.daily_cost.fired"})])
    delivery.deliver_due()
    row = WebhookDelivery.objects.get()

    for url in (
        reverse("admin:webhooks_webhookevent_changelist"),
        reverse("admin:webhooks_webhookevent_change", args=[row.event_id]),
        reverse("admin:webhooks_webhookdelivery_changelist") + "?event__type=alarm.triggered",
        reverse("admin:webhooks_webhookdelivery_changelist") + "?state__exact=pending",
    ):
        assert staff_client.get(url).status_code == 200, url


def test_the_secret_never_reaches_the_logs(staff_client, receiver, caplog):
    with caplog.at_level(logging.DEBUG):
        added = add_endpoint(staff_client, receiver.url)
        [secret] = set(SECRET.findall(added.content.decode()))
        endpoint = WebhookEndpoint.objects.get()
        rotated = action(staff_client, "rotate_secret", [endpoint])
        [new] = set(SECRET.findall(rotated.content.decode()))
        outbox.record([(events.SETTLEMENT_CONFIRMED, 1, {"settlement_id": 1})])
        receiver.behaviour = "error"
        delivery.deliver_due()

    assert caplog.records
    assert secret not in caplog.text and new not in caplog.text


def test_households_and_anonymous_visitors_cannot_reach_the_webhook_admin(client, household_client):
    for browser in (client, household_client):
        response = browser.get(reverse(CHANGELIST))
        assert response.status_code == 302 and reverse("admin:login") in response["Location"]


@pytest.mark.parametrize(
    "name",
    [
        "admin:webhooks_webhookendpoint_changelist",
        "admin:webhooks_webhookdelivery_changelist",
        "admin:webhooks_webhookevent_changelist",
    ],
)
def test_list_pages_take_the_same_queries_however_many_rows(staff_client, name):
    def queries_with(endpoints: int) -> int:
        for number in range(endpoints):
            make_endpoint(f"https://crm{number}.example/hooks")
        outbox.record([(events.METER_SILENT, 1, {"meter_id": n}) for n in range(endpoints)])
        with CaptureQueriesContext(connection) as queries:
            assert staff_client.get(reverse(name)).status_code == 200
        return len(queries)

    assert queries_with(1) == queries_with(6)
