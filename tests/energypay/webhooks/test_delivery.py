"""Sending the outbox to a real HTTP receiver: signed as Standard Webhooks says (checked with the
``standardwebhooks`` package, an independent implementation), retried with backoff, logged per attempt,
given up after the retry window, endpoints disabled after days of failures; nothing lost, nothing sent twice."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from energypay.webhooks import delivery, events, outbox
from energypay.webhooks.models import DeliveryAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.energypay.webhooks.conftest import make_endpoint
from tests.energypay.webhooks.receiver import Receiver
from tests.threads import at_once

pytestmark = pytest.mark.django_db


def queue(event_type: str = events.SETTLEMENT_CONFIRMED, household_id: int | None = 7, **data) -> int:
    return outbox.record([(event_type, household_id, {"settlement_id": 1, **data})])


def verify(secret: str, request) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


def test_a_delivery_arrives_signed_so_that_the_standard_library_verifies_it(receiver, endpoint):
    _, secret = endpoint
    queue(eur="0.400000")

    assert delivery.deliver_due() == {"delivered": 1}

    [request] = receiver.requests
    payload = verify(secret, request)
    assert payload["type"] == "settlement.confirmed"
    assert payload["data"] == {"settlement_id": 1, "eur": "0.400000"}
    event = WebhookEvent.objects.get()
    assert request.headers["webhook-id"] == event.message_id
    assert request.body == event.body.encode()  # the stored body, byte for byte
    assert request.headers["Content-Type"] == "application/json"
    with pytest.raises(WebhookVerificationError):
        Webhook(WebhookEndpoint(url="x").issue_secret()).verify(request.body, request.headers)  # another secret fails
    row = WebhookDelivery.objects.get()
    assert (row.state, row.attempts, row.last_status, row.next_attempt_at) == ("delivered", 1, 200, None)
    [attempt] = row.log.all()
    assert attempt.succeeded and attempt.response_excerpt == '{"received": true}' and attempt.error == ""


def test_a_tampered_body_or_a_replayed_old_timestamp_fails_verification(receiver, endpoint):
    _, secret = endpoint
    queue()
    delivery.deliver_due()
    [request] = receiver.requests

    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body.replace(b":1}", b":2}"), request.headers)
    with time_machine.travel(timezone.now() + timedelta(minutes=6)), pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(request.body, request.headers)  # "too old": a captured request cannot be replayed


def test_after_a_rotation_the_old_secret_still_verifies_as_a_second_signature_until_the_grace_ends(
    receiver, endpoint, settings
):
    ep, old = endpoint
    settings.WEBHOOK_ROTATION_GRACE_HOURS = 24
    start = timezone.now()
    new = ep.rotate_secret(start)
    queue()

    delivery.deliver_due()

    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(new, request) and verify(old, request)
    with time_machine.travel(start + timedelta(hours=25), tick=False):
        delivery.redeliver([WebhookDelivery.objects.get().pk], timezone.now())
        delivery.deliver_due()
        late = receiver.requests[-1]
        assert len(late.headers["webhook-signature"].split(" ")) == 1
        assert verify(new, late)
        with pytest.raises(WebhookVerificationError):
            verify(old, late)
    assert late.headers["webhook-id"] == request.headers["webhook-id"]  # the same message, sent again


def test_a_receiver_answering_500_is_retried_with_backoff_and_each_attempt_logged(receiver, endpoint):
    receiver.behaviour = "error"
    queue()
    start = timezone.now()

    with time_machine.travel(start, tick=False):
        assert delivery.deliver_due() == {"retrying": 1}
        assert delivery.deliver_due() == {}  # not due again yet
    row = WebhookDelivery.objects.get()
    assert row.state == "pending" and row.attempts == 1 and row.last_status == 500
    assert row.next_attempt_at == start + timedelta(minutes=1)
    with time_machine.travel(row.next_attempt_at, tick=False):
        assert delivery.deliver_due() == {"retrying": 1}
    row.refresh_from_db()
    assert row.next_attempt_at == start + timedelta(minutes=1) + timedelta(minutes=2)
    receiver.behaviour = "ok"
    with time_machine.travel(row.next_attempt_at, tick=False):
        assert delivery.deliver_due() == {"delivered": 1}
    attempts = list(DeliveryAttempt.objects.order_by("number"))
    assert [a.status_code for a in attempts] == [500, 500, 200]
    assert [a.next_attempt_at is None for a in attempts] == [False, False, True]
    assert len(attempts[0].response_excerpt) == 1000  # bounded: the receiver said 5,016 characters
    assert attempts[0].error == "HTTP 500"
    assert len({request.headers["webhook-id"] for request in receiver.requests}) == 1


def test_retries_go_on_for_the_retry_window_then_the_delivery_is_given_up_and_stays_in_the_log(
    receiver, endpoint, settings
):
    settings.WEBHOOK_RETRY_HOURS = 24
    receiver.behaviour = "error"
    queue()
    start = timezone.now()
    now = start
    outcomes = []
    while True:
        with time_machine.travel(now, tick=False):
            outcome = delivery.deliver_due()
        outcomes.append(next(iter(outcome)))
        row = WebhookDelivery.objects.get()
        if row.next_attempt_at is None:
            break
        now = row.next_attempt_at

    assert outcomes[-1] == "gave_up" and set(outcomes[:-1]) == {"retrying"}
    assert row.state == "failed"
    assert now - start > timedelta(hours=20)  # tried for about a day: 1, 2, 4 ... minutes, then every 4 hours
    assert row.attempts == len(outcomes) == DeliveryAttempt.objects.count() >= 10


def test_an_endpoint_failing_for_days_is_disabled_its_events_wait_and_re_enabling_sends_them(
    receiver, endpoint, settings
):
    ep, _ = endpoint
    settings.WEBHOOK_DISABLE_AFTER_DAYS, settings.WEBHOOK_RETRY_HOURS = 2, 72
    receiver.behaviour = "error"
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        queue()
        delivery.deliver_due()
    ep.refresh_from_db()
    assert ep.failing_since == start and ep.disabled_at is None
    later = start + timedelta(days=2, minutes=1)
    with time_machine.travel(later, tick=False):
        queue(settlement_id=2)
        delivery.deliver_due()
    ep.refresh_from_db()
    assert ep.disabled_at == later and "failed for 2 days" in ep.disabled_reason
    with time_machine.travel(later + timedelta(hours=1), tick=False):
        queue(settlement_id=3)  # still queued for it: nothing is lost while it is disabled
        sent = len(receiver.requests)
        assert delivery.deliver_due() == {}
        assert len(receiver.requests) == sent

    receiver.behaviour = "ok"
    with time_machine.travel(later + timedelta(days=3), tick=False):
        assert ep.reenable(timezone.now())
        assert delivery.deliver_due() == {"delivered": 3}
    ep.refresh_from_db()
    assert ep.disabled_at is None and ep.failing_since is None
    assert set(WebhookDelivery.objects.values_list("state", flat=True)) == {"delivered"}


def test_one_success_ends_a_failing_streak(receiver, endpoint):
    ep, _ = endpoint
    receiver.behaviour = "error"
    queue()
    delivery.deliver_due()
    receiver.behaviour = "ok"
    queue(settlement_id=2)

    delivery.deliver_due()

    ep.refresh_from_db()
    assert ep.failing_since is None


def test_a_receiver_that_hangs_blocks_no_worker_beyond_the_timeout_and_its_other_events_wait(receiver, endpoint):
    """One timeout per run for a hanging receiver, not one per event: the rest wait for their turn."""
    receiver.behaviour = "hang"
    for number in range(5):
        queue(settlement_id=number)
    started = time.monotonic()

    assert delivery.deliver_due() == {"retrying": 1}

    assert time.monotonic() - started < 3  # connect 1 s + read 1 s, and a little
    assert WebhookDelivery.objects.filter(attempts=0, state="pending").count() == 4
    [attempt] = DeliveryAttempt.objects.all()
    assert attempt.status_code is None and "timed out" in attempt.error


def test_a_hanging_receiver_does_not_hold_up_another_endpoints_events(receiver, endpoint):
    good = Receiver()
    try:
        make_endpoint(good.url)
        receiver.behaviour = "hang"
        queue()

        assert delivery.deliver_due() == {"retrying": 1, "delivered": 1}
        assert len(good.requests) == 1
    finally:
        good.close()


def test_a_receiver_that_resolves_to_loopback_is_refused_without_the_setting_and_retried(receiver, endpoint, settings):
    """The setting may be turned off after the endpoint was saved: every attempt checks the address again."""
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    queue()

    assert delivery.deliver_due() == {"retrying": 1}

    assert receiver.requests == []
    row = WebhookDelivery.objects.get()
    assert row.state == "pending" and row.next_attempt_at > timezone.now()
    assert "127.0.0.1" in row.last_error and row.last_error.startswith("refused:")


def test_a_redirect_is_a_failed_attempt_and_the_other_server_hears_nothing(receiver, endpoint):
    elsewhere = Receiver()
    receiver.behaviour, receiver.redirect_to = "redirect", elsewhere.url
    try:
        queue()
        assert delivery.deliver_due() == {"retrying": 1}
        assert elsewhere.requests == []
    finally:
        elsewhere.close()
    assert WebhookDelivery.objects.get().last_error == f"redirect to {elsewhere.url} not followed"


def test_a_worker_that_died_mid_attempt_leaves_the_delivery_due_again_after_its_lease(receiver, endpoint):
    queue()
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        claim = delivery.claim_next(timezone.now())  # claimed, then the process died before sending
        assert claim is not None and claim.number == 1
        assert delivery.claim_next(timezone.now()) is None  # nobody else takes it meanwhile
    with time_machine.travel(start + delivery.lease() + timedelta(seconds=1), tick=False):
        assert delivery.deliver_due() == {"delivered": 1}
    row = WebhookDelivery.objects.get()
    assert row.attempts == 2 and row.state == "delivered"


def test_staff_redelivery_sends_a_delivered_event_again_with_the_same_id(receiver, endpoint):
    queue()
    delivery.deliver_due()
    row = WebhookDelivery.objects.get()

    assert delivery.redeliver([row.pk], timezone.now()) == 1
    assert delivery.deliver_due() == {"delivered": 1}

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.body == second.body
    assert DeliveryAttempt.objects.filter(delivery=row).count() == 2


def test_an_inactive_endpoint_gets_nothing_queued_and_nothing_sent(receiver, endpoint):
    ep, _ = endpoint
    queue()
    WebhookEndpoint.objects.filter(pk=ep.pk).update(active=False)

    assert queue(settlement_id=2) == 0
    assert delivery.deliver_due() == {}
    assert receiver.requests == []


def test_the_test_event_goes_to_its_endpoint_whatever_it_subscribes_to(receiver, db):
    ep, secret = make_endpoint(receiver.url, types=[events.METER_SILENT])

    outbox.record_for(ep, events.TEST, {"endpoint_id": ep.pk})
    delivery.deliver_due()

    assert verify(secret, receiver.requests[0])["type"] == "webhook.test"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks are what is under test; SQLite serializes")
@pytest.mark.django_db(transaction=True)
def test_workers_sending_at_once_send_every_delivery_exactly_once(receiver):
    make_endpoint(receiver.url)
    outbox.record([(events.SETTLEMENT_CONFIRMED, 1, {"settlement_id": n}) for n in range(40)])

    results, errors = at_once(*[delivery.deliver_due] * 4)

    assert errors == []
    assert sum(sum(tally.values()) for tally in results) == 40
    ids = [request.headers["webhook-id"] for request in receiver.requests]
    assert len(ids) == len(set(ids)) == 40
    assert set(WebhookDelivery.objects.values_list("state", "attempts")) == {("delivered", 1)}
    assert sorted(json.loads(r.body)["data"]["settlement_id"] for r in receiver.requests) == list(range(40))
