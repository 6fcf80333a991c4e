"""prune_webhooks: events and their delivery log go once done and old; a delivery still pending never does."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from energypay.webhooks import delivery, events, outbox
from energypay.webhooks.models import DeliveryAttempt, WebhookDelivery, WebhookEvent
from energypay.webhooks.retention import prune_events
from energypay.webhooks.tasks import prune_webhooks
from tests.energypay.webhooks.conftest import make_endpoint

pytestmark = pytest.mark.django_db


def test_old_finished_events_go_with_their_log_and_pending_ones_stay_however_old(receiver, settings):
    make_endpoint(receiver.url)
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        outbox.record([(events.METER_SILENT, 1, {"meter_id": 1})])
        delivery.deliver_due()  # delivered
        receiver.behaviour = "error"
        outbox.record([(events.METER_SILENT, 1, {"meter_id": 2})])
        delivery.deliver_due()  # failing: still pending
    assert DeliveryAttempt.objects.count() == 2

    assert prune_events(start + timedelta(days=29), days=30, batch_size=1) == 0
    deleted = prune_events(start + timedelta(days=31), days=30, batch_size=1)

    assert deleted == 3  # the delivered event, its delivery and its attempt
    [kept] = WebhookEvent.objects.all()
    assert '"meter_id":2' in kept.body and WebhookDelivery.objects.get().state == "pending"


def test_the_command_and_the_task_use_the_setting(receiver, settings):
    make_endpoint(receiver.url)
    settings.RETENTION_WEBHOOK_DAYS = 7
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        outbox.record([(events.METER_SILENT, 1, {"meter_id": 1})])
        delivery.deliver_due()
    out = StringIO()
    with time_machine.travel(start + timedelta(days=6), tick=False):
        call_command("prune_webhooks", stdout=out)
        assert WebhookEvent.objects.exists()
    with time_machine.travel(start + timedelta(days=8), tick=False):
        assert prune_webhooks() == 3

    assert out.getvalue().strip() == "Deleted 0 webhook events, deliveries and attempts older than 7 days."
    assert not WebhookEvent.objects.exists()
